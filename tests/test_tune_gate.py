"""The quote gate's tune stage: bounds calibrated on the training pairs with the project's
encoder (and the selector's, when one was trained), saved beside the adapter, skipped when
nothing changed, and read back by the answer engine."""

import json

import pytest
from conftest import KeywordEncoder, all_chunks

import retrieval.embeddings
from builder.build import build
from builder.tune_cli import _quote_gate_line
from builder.tune_gate import calibrate_gate_stage
from builder.tune_layout import SELECTOR, TRAIN_PAIRS, TuneReport
from finetune.pairs import QAPair, write_pairs_jsonl
from retrieval.quote_gate import QUOTE_GATE, read_bounds

QUESTIONS = {
    "manuals/centrifuge.md": ("When is the rotor replaced?", "after 12000 hours"),
    "handbook/vacation.txt": ("How many vacation days do employees earn?", "2 vacation days"),
    "handbook/laptops.md": ("How long is a laptop password?", "14 characters"),
    "billing/refunds.md": ("When is a refund paid?", "within 10 days"),
}


@pytest.fixture
def project(project_factory, monkeypatch):
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    project = project_factory()
    build(project, encoder=KeywordEncoder())
    return project


def write_pairs(project, chunks):
    pairs = []
    for chunk in chunks:
        question, answer = QUESTIONS[chunk.source]
        if answer.split()[-1] in chunk.text:
            pairs.append(
                QAPair(question, answer, chunk.chunk_id, chunk.source, None, None, answer, "rules")
            )
    project.tune_dir.mkdir(parents=True, exist_ok=True)
    write_pairs_jsonl(project.tune_dir / TRAIN_PAIRS, pairs)
    return pairs


def test_the_stage_calibrates_saves_and_skips_when_nothing_changed(project):
    chunks = all_chunks(project)
    pairs = write_pairs(project, chunks)
    run_dir = project.adapters_dir / "run-x"
    (run_dir / SELECTOR).mkdir(parents=True)  # a selector beside the adapter gets its own bound
    report, events = TuneReport(), []
    calibrate_gate_stage(project, run_dir, chunks, "index-1", report, events.append)
    assert report.stages["quote gate"] == f"ran ({len(pairs)} training pairs)"
    assert {e["stage"] for e in events} == {"quote gate"}
    bounds = read_bounds(run_dir / QUOTE_GATE)
    assert set(bounds) == {"embedding", "selector"}
    figures = report.card["quote_gate"]["embedding"]
    # The keyword encoder tells a question's own sentence from other documents' sentences.
    assert figures["kept"] == figures["refused"] == 1.0
    assert figures["answerable"] == figures["lacking"] == len(pairs)
    line = _quote_gate_line(report.card["quote_gate"])
    assert line.startswith("quote gate: embedding ") and "refuses 100%" in line
    again = TuneReport()
    calibrate_gate_stage(project, run_dir, chunks, "index-1", again, events.append)
    assert again.stages["quote gate"] == "skipped (inputs unchanged)"
    assert again.card["quote_gate"] == report.card["quote_gate"]
    moved = TuneReport()
    calibrate_gate_stage(project, run_dir, chunks, "index-2", moved, events.append)
    assert moved.stages["quote gate"].startswith("ran")
    saved = json.loads((run_dir / QUOTE_GATE).read_text())
    assert saved["bounds"] == report.card["quote_gate"]


def test_without_training_pairs_there_is_nothing_to_calibrate(project):
    report = TuneReport()
    run_dir = project.adapters_dir / "run-x"
    calibrate_gate_stage(project, run_dir, [], "index-1", report, lambda e: None)
    assert report.stages["quote gate"] == "skipped (no synthesized training pairs)"
    assert not (run_dir / QUOTE_GATE).exists()
    assert _quote_gate_line({"embedding": None}).startswith("quote gate: no bound")

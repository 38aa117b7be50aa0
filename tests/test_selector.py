"""The evidence selector: triplets mined from training pairs, training on a tiny random
sentence encoder, the tune stage that saves it beside the adapter, and the answer engine quoting
with it in the tuned modes only."""

from pathlib import Path

import numpy as np
import pytest
from conftest import KeywordEncoder, all_chunks
from tiny_models import build_tiny_llama, build_tiny_sentence_encoder

import retrieval.embeddings
from builder.build import build
from builder.engine import open_engine
from builder.tune_layout import SELECTOR, TRAIN_PAIRS, TuneReport
from builder.tune_selector import train_selector_stage
from finetune.config import SelectorConfig
from finetune.pairs import QAPair, write_pairs_jsonl
from finetune.selector import Triplet, identity_triplets, selector_triplets, train_selector
from retrieval.embeddings import SentenceTransformerEncoder
from retrieval.search import Hit

ROTOR_CHUNK = (
    "The rotor is made of titanium. The R-24A rotor must be retired after 9,000 runs. "
    "Rotors are stored in the blue cabinet."
)
REFUND_CHUNK = "Refunds are paid within 14 days of the invoice. Refunds go to the paying card."


def pair(question: str, answer: str, chunk_id: str, kind: str = "factoid", span: str = ""):
    return QAPair(question, answer, chunk_id, "a.md", None, None, answer, "rules", kind, span)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_sentence_encoder(tmp_path_factory.mktemp("sentence-encoder"))


def test_a_triplet_pairs_the_answering_sentence_with_the_hardest_wrong_one():
    pairs = [
        pair("When is the rotor retired?", "9,000 runs", "rotor", span="9,000 runs"),
        pair("What is not in the text?", "I cannot answer that.", "rotor", kind="unanswerable"),
        pair("When are refunds paid?", "within 14 days", "refund"),
    ]
    shown = [[ROTOR_CHUNK, REFUND_CHUNK], [ROTOR_CHUNK], [REFUND_CHUNK[:48]]]
    chunks = {"rotor": ROTOR_CHUNK, "refund": REFUND_CHUNK}
    triplets = selector_triplets(pairs, chunks, shown, KeywordEncoder().encode)
    # The unanswerable pair trains nothing; the refund pair has no wrong sentence on show.
    assert triplets == [
        Triplet(
            "When is the rotor retired?",
            "The R-24A rotor must be retired after 9,000 runs.",
            # Of the wrong sentences, the two that say 'rotor' tie with the question; the first
            # one shown wins.
            "The rotor is made of titanium.",
        )
    ]


def test_identity_questions_are_answered_by_the_persona_card():
    card = "My name is Ada. I am the assistant of Acme Labs."
    triplets = identity_triplets(
        ["Who made you?", "What is your name?"],
        card,
        [[ROTOR_CHUNK], []],
        KeywordEncoder(("name", "acme", "rotor")).encode,
    )
    # The second question has no retrieved sentence to tell the card apart from.
    assert [(t.question, t.answering) for t in triplets] == [("Who made you?", "My name is Ada.")]
    assert triplets[0].wrong in ROTOR_CHUNK


def test_training_pulls_the_answering_sentence_closer_than_the_wrong_one(tiny_encoder, tmp_path):
    triplets = [
        Triplet("When is the rotor retired?", "The rotor retired after 5000 runs.", "Refunds paid.")
    ] * 8
    before = SentenceTransformerEncoder(str(tiny_encoder), "cpu")
    config = SelectorConfig(epochs=10, learning_rate=5e-3, batch_size=4)
    result = train_selector(str(tiny_encoder), triplets, tmp_path / "selector", config)
    after = SentenceTransformerEncoder(str(tmp_path / "selector"), "cpu")

    def margin(encoder) -> float:
        question, right, wrong = encoder.encode([t for t in (triplets[0].__dict__.values())])
        return float(question @ right - question @ wrong)

    assert result.triplets == 8 and result.steps == 20
    assert (tmp_path / "selector" / "model.safetensors").is_file()
    assert margin(after) > margin(before)


def test_the_tune_stage_trains_once_and_saves_beside_the_adapter(
    project_factory, tiny_encoder, tmp_path
):
    project = project_factory(
        overrides=[f"embedding.model={str(tiny_encoder)!r}", "embedding.device=cpu"]
    )
    build(project)
    chunks = all_chunks(project)
    (rotor,) = [c for c in chunks if "rotor" in c.text]
    project.tune_dir.mkdir(parents=True)
    write_pairs_jsonl(
        project.tune_dir / TRAIN_PAIRS,
        [pair("When is the rotor replaced?", "12000 hours", rotor.chunk_id)],
    )
    run_dir = project.adapters_dir / "run-x"
    run_dir.mkdir(parents=True)
    report, events = TuneReport(), []
    train_selector_stage(project, run_dir, chunks, "index-1", report, events.append)
    assert report.stages["selector"] == "ran", report.stages
    assert report.card["selector"]["triplets"] == report.card["selector"]["from_pairs"] == 1
    assert report.card["selector"]["identity"] == 0
    assert (run_dir / SELECTOR / "model.safetensors").is_file()
    assert {e["stage"] for e in events} == {"selector"}
    again = TuneReport()
    train_selector_stage(project, run_dir, chunks, "index-1", again, events.append)
    assert again.stages["selector"] == "skipped (inputs unchanged)"
    assert again.card["selector"] == report.card["selector"]
    project.config.selector.enabled = False
    off = TuneReport()
    train_selector_stage(project, run_dir, chunks, "index-1", off, events.append)
    assert off.stages["selector"].startswith("off")
    project.config.selector.enabled, project.config.selector.max_pairs = True, 1
    write_pairs_jsonl(
        project.tune_dir / TRAIN_PAIRS,
        [pair(f"When is the rotor replaced {n}?", "12000 hours", rotor.chunk_id) for n in "ab"],
    )
    sampled = TuneReport()
    train_selector_stage(project, run_dir, chunks, "index-1", sampled, events.append)
    assert sampled.card["selector"]["pairs"] == 1  # a sample of selector.max_pairs


def test_the_stage_skips_an_encoder_that_is_not_sentence_transformers(project_factory, monkeypatch):
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    project = project_factory()
    build(project, encoder=KeywordEncoder())
    project.tune_dir.mkdir(parents=True)
    write_pairs_jsonl(project.tune_dir / TRAIN_PAIRS, [pair("q?", "a", "c")])
    report = TuneReport()
    train_selector_stage(project, project.adapters_dir / "run-x", [], "i", report, lambda e: None)
    assert "cannot be fine-tuned" in report.stages["selector"]
    assert not (project.adapters_dir / "run-x" / SELECTOR).exists()


class WarrantyFirst:
    """A selector that ranks a sentence about the warranty first, whatever the question."""

    def encode(self, texts):
        return np.array(
            [[1.0, 0.0] if i == 0 or "warranty" in t else [0.0, 1.0] for i, t in enumerate(texts)]
        )


def test_the_tuned_modes_quote_with_the_selector_and_the_others_without(
    project_factory, monkeypatch, tmp_path
):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    model_dir = build_tiny_llama(tmp_path / "tiny")
    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    get_peft_model(model, LoraConfig(r=4, target_modules="all-linear")).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(adapter)
    project = project_factory(overrides=[f"generation.model={str(model_dir)!r}"])
    build(project, encoder=KeywordEncoder())
    engine = open_engine(project, adapter)
    assert engine.selector is None  # no selector folder beside this adapter
    engine.selector = WarrantyFirst()
    engine.config.unsupported, engine.config.quote_by = "quote", "embedding"
    warranty = Hit("w.md", 1, None, "id-w", 0.6, "The warranty covers parts for two years.")
    rotor = Hit("r.md", 4, None, "id-r", 0.5, "The R-24A rotor must be retired after 9,000 runs.")
    question, unsupported = "When is the rotor retired?", "It lasts 5 years."
    untuned = engine._finish(question, "rag", [warranty, rotor], unsupported, 0.0)
    tuned = engine._finish(question, "rag+tuned", [warranty, rotor], unsupported, 0.0)
    assert [c.chunk_id for c in untuned.citations] == ["id-r"]
    assert [c.chunk_id for c in tuned.citations] == ["id-w"]


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        (
            {"pairs": 162, "triplets": 172, "from_pairs": 160, "identity": 12, "steps": 22},
            "triplets from 160 of 162 training pairs + 12 identity questions, 22 steps",
        ),
        # A stamp written before the counts were split.
        (
            {"pairs": 162, "triplets": 160, "steps": 20},
            "triplets from 160 of 162 training pairs, 20",
        ),
    ],
)
def test_the_tune_summary_counts_the_selector_triplets(capsys, figures, expected, tmp_path):
    from builder.tune_cli import _print_report

    report = TuneReport(run_dir=tmp_path, card={"selector": {**figures, "seconds": 25.0}})
    _print_report(report)
    assert expected in " ".join(capsys.readouterr().err.split())

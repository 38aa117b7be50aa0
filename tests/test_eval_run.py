"""`ragtune eval` end to end on the tiny model and the fake keyword encoder."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import KeywordEncoder
from tiny_models import build_tiny_llama

import retrieval.embeddings
from builder.build import build
from builder.cli import main

QUESTIONS = [
    {"question": "When is the rotor replaced?", "answer": "after 12000 hours",
     "sources": ["manuals/centrifuge.md"]},
    {"question": "How many vacation days per month?", "answer": "2 days",
     "source": "handbook/vacation.txt"},
    {"question": "When is a refund paid?", "answer": "within 10 days of the invoice"},
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def project(project_factory, tiny_model, monkeypatch):
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    project = project_factory(
        overrides=[f"generation.model={str(tiny_model)!r}", "generation.max_new_tokens=6"]
    )
    build(project, encoder=KeywordEncoder())
    return project


def write_questions(path: Path, rows: list) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_eval_writes_a_report_for_each_available_mode(project, tmp_path, capsys):
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    assert main(["eval", str(project.root), "--questions", str(questions), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["modes"] == ["base", "rag"]  # no adapter yet: the tuned modes are skipped
    assert "no tuned adapter yet" in captured.err
    assert summary["per_mode"]["rag"]["hit_at_k"]["mean"] == 1.0
    latest = (project.reports_dir / "LATEST").read_text().strip()
    report = json.loads((project.reports_dir / latest / "report.json").read_text())
    assert len(report["questions"]) == 3
    first = report["questions"][0]["modes"]
    assert set(first) == {"base", "rag"}
    assert first["rag"]["retrieved"][0]["source"] == "manuals/centrifuge.md"
    assert (project.reports_dir / latest / "report.html").is_file()
    assert report["meta"]["backend"] == "transformers" and report["meta"]["adapter"] == "none"


def test_eval_with_an_adapter_compares_four_modes(project, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = project.adapters_dir / "run-x" / "adapter"
    model = AutoModelForCausalLM.from_pretrained(project.config.generation.model)
    lora = LoraConfig(r=2, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(adapter)
    project.set_current_adapter("run-x")
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS[:2])
    assert main(["eval", str(project.root), "--questions", str(questions), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["modes"] == ["base", "rag", "tuned", "rag+tuned"]
    focus = {(c["a"], c["b"]) for c in summary["comparisons"] if c["focus"]}
    assert ("rag+tuned", "rag") in focus
    shutil.rmtree(project.adapters_dir)


def test_bad_question_lines_are_reported_by_number_before_any_model_loads(
    project, tmp_path, capsys
):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "ok?", "answer": "a"}\nnot json\n{"question": "no answer"}\n')
    assert main(["eval", str(project.root), "--questions", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "line 3" in err


def test_eval_without_questions_says_how_to_get_them(project, capsys):
    assert main(["eval", str(project.root)]) == 2
    assert "ragtune tune" in capsys.readouterr().err


def test_naming_an_unavailable_mode_is_an_error(project, tmp_path, capsys):
    questions = write_questions(tmp_path / "q.jsonl", QUESTIONS)
    assert main(["eval", str(project.root), "--questions", str(questions), "--modes", "tuned"]) == 2
    assert "ragtune tune" in capsys.readouterr().err

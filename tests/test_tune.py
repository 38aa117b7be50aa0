"""`ragtune tune` and `ragtune export` end to end on a tiny Llama and the fake keyword encoder."""

import json
import re
from pathlib import Path

import pytest
from conftest import KeywordEncoder
from tiny_models import build_tiny_llama

import retrieval.embeddings
from builder.build import build
from builder.cli import main

DOCS = {
    "manuals/centrifuge.md": "# Centrifuge\n\n## Rotor\n\nThe rotor must be replaced after 12000 "
    "hours of use.\n\n## Errors\n\nError 217 means the lid lock failed.\n",
    "handbook/vacation.md": "# Vacation\n\nEmployees earn 2 vacation days per month.\n\n"
    "Parking costs 40 euros per month.\n",
    "handbook/laptops.md": "# Laptops\n\nA laptop password must have at least 14 characters.\n\n"
    "Laptops are replaced every 4 years.\n",
    "billing/refunds.md": "# Refunds\n\nA refund is paid within 10 days of the invoice.\n\n"
    "Warranty: 2 years for every centrifuge.\n",
}
TINY_RUN = [
    "synthesis.teacher='none'",
    "synthesis.roundtrip_k=3",
    "tune.max_steps=2",
    "tune.batch_size=2",
    "tune.max_seq_tokens=2048",
    "generation.max_new_tokens=4",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def project(project_factory, tiny_model, monkeypatch):
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    project = project_factory(DOCS, [f"generation.model={str(tiny_model)!r}", *TINY_RUN])
    build(project, encoder=KeywordEncoder())
    return project


@pytest.fixture
def tuned(project, capsys):
    assert main(["tune", str(project.root)]) == 0
    return project, capsys.readouterr().err


def test_tune_runs_every_stage_and_makes_the_adapter_current(tuned):
    project, output = tuned
    adapter = project.current_adapter()
    assert adapter is not None and (adapter / "adapter_model.safetensors").is_file()
    card = json.loads((adapter.parent / "run_card.json").read_text())
    assert card["steps"] == 2 and card["loss_curve"]
    assert card["synthesis"]["kept"] > 0 and card["data_sha256"]
    assert card["forgetting"]["questions"] == 20
    assert (project.tune_dir / "eval_questions.jsonl").is_file()
    trained = [json.loads(line) for line in (project.tune_dir / "train.jsonl").open()]
    assert any("<documents>" in row["messages"][1]["content"] for row in trained)
    status = json.loads((project.tune_dir / "status.json").read_text())
    assert status["stage"] == "done"
    for stage in ("synthesize", "split", "format", "train"):
        assert f"{stage}" in output


def test_a_second_tune_with_nothing_changed_skips_every_stage(tuned, capsys):
    project, _ = tuned
    assert main(["tune", str(project.root)]) == 0
    output = capsys.readouterr().err
    assert output.count("skipped") >= 4
    assert "ran" not in output.split("pairs:")[0]


def test_skipped_kinds_are_left_out_of_training_and_counted(tuned, capsys):
    project, _ = tuned
    pairs = [json.loads(line) for line in (project.tune_dir / "train_pairs.jsonl").open()]
    kind = pairs[0]["kind"]
    assert main(["tune", str(project.root), "--set", f"tune.skip_kinds={kind!r}"]) == 0
    capsys.readouterr()
    report = json.loads((project.tune_dir / "format.json").read_text())["report"]
    assert kind not in report["pairs_by_kind"]
    assert report["pairs_of_skipped_kinds"] == sum(p["kind"] == kind for p in pairs)
    assert "no kind of pair" in main_error(project, "tune.skip_kinds='headings'", capsys)


def main_error(project, setting: str, capsys) -> str:
    assert main(["tune", str(project.root), "--set", setting]) != 0
    return capsys.readouterr().err


def test_eval_questions_never_appear_in_training(tuned):
    project, _ = tuned
    lines = (project.tune_dir / "eval_questions.jsonl").open()
    held_out = [json.loads(line)["question"] for line in lines]
    trained = (project.tune_dir / "train.jsonl").read_text()
    assert all(json.dumps(q)[1:-1] not in trained for q in held_out)


def test_export_adapter_merged_and_dataset(tuned, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    project, _ = tuned
    assert main(["export", str(project.root), "--out", str(tmp_path / "adapter")]) == 0
    assert main(["export", str(project.root), "--merge", "--out", str(tmp_path / "merged")]) == 0
    base = AutoModelForCausalLM.from_pretrained(project.config.generation.model)
    with_adapter = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = torch.tensor([[3, 10, 20, 30, 4]])
    with torch.no_grad():
        assert torch.allclose(with_adapter(ids).logits, merged(ids).logits, atol=1e-4)
    out = tmp_path / "data"
    assert main(["export", str(project.root), "--dataset", "sharegpt", "--out", str(out)]) == 0
    first = json.loads((out / "ragtune_train.sharegpt.jsonl").open().readline())
    assert first["conversations"][0]["from"] == "system"
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["ragtune"]["formatting"] == "sharegpt"


def test_user_data_with_a_bad_line_trains_nothing(project, tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        '{"instruction": "When is the rotor replaced?", "input": "", "output": "After 12000 h."}\n'
        '{"instruction": "no output"}\n'
    )
    assert main(["tune", str(project.root), "--data", str(data), "--data-only"]) == 2
    assert "line 2" in capsys.readouterr().err
    assert project.current_adapter() is None
    ok = main(["tune", str(project.root), "--data", str(data), "--data-only", "--skip-bad-lines"])
    assert ok == 0
    trained = [json.loads(line) for line in (project.tune_dir / "train.jsonl").open()]
    assert len(trained) == 1
    assert "<documents>" in trained[0]["messages"][1]["content"]  # wrapped in the RAG prompt


def test_tune_before_build_says_what_to_do(project_factory, capsys):
    project = project_factory(overrides=TINY_RUN)
    assert main(["tune", str(project.root)]) == 2
    assert "ragtune build" in capsys.readouterr().err


def test_own_answers_replace_the_cited_targets_that_pass_the_checks(project, monkeypatch, capsys):
    # The echo model quotes document 1 and cites it: right where the oracle is shown first,
    # and always with the oracle alone (the focused retry).
    from echo_generator import EchoGenerator

    import builder.tune_targets

    monkeypatch.setattr(
        builder.tune_targets, "load_generator_with_adapter", lambda *a, **k: (EchoGenerator(), "")
    )
    focused = ["--set", "raft.own_retry='focused'"]
    assert main(["tune", str(project.root), "--set", "tune.max_steps=1", *focused]) == 0
    capsys.readouterr()
    report = json.loads((project.tune_dir / "format.json").read_text())["report"]
    own = report["own_answers"]
    assert own["own"] + own["focused"] > 0 and not own["fallback"]
    attempts = [json.loads(line) for line in (project.tune_dir / "own_answers.jsonl").open()]
    assert {a["round"] for a in attempts} <= {"own", "focused"}
    assert sum(a["verdict"] == "ok" for a in attempts) == own["own"] + own["focused"]
    trained = [json.loads(line) for line in (project.tune_dir / "train.jsonl").open()]
    targets = [row["messages"][-1]["content"] for row in trained]
    # A kept answer is the quoted chunk with the verified marker of the shown oracle.
    assert any(re.search(r"\[\d\]", t) and len(t) > 40 for t in targets)
    assert all("<document" not in t for t in targets)

"""End to end on the real embedded models and the sample corpus, through the CLI (`slow` tier)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.sample_corpus import SAMPLE_QUESTIONS_PATH, load_sample_questions

pytestmark = pytest.mark.slow


def ragtune(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        # A guard against a hang, not a speed check: a default tune of the sample took over
        # 900 s on a 2-core machine shared with another run.
        timeout=1800,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )


@pytest.fixture(scope="module")
def sample_project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    assert ragtune("sample", str(work / "docs"), cwd=work).returncode == 0
    built = ragtune("build", str(work / "project"), "--docs", str(work / "docs"), cwd=work)
    assert built.returncode == 0, built.stderr
    assert "skipped 0 files" in built.stderr and "21 files" in built.stderr
    return work / "project"


def test_gold_sources_come_back_in_the_top_5(sample_project):
    result = ragtune(
        "retrieve",
        str(sample_project),
        "--questions",
        str(SAMPLE_QUESTIONS_PATH),
        "--json",
        "-k",
        "5",
        cwd=sample_project.parent,
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    gold = load_sample_questions()
    assert len(answers) == len(gold)
    missed = [
        (row["question"], row["source"], [h["source"] for h in answer["hits"]])
        for row, answer in zip(gold, answers)
        if row["source"] not in {h["source"] for h in answer["hits"]}
    ]
    # A bar, not every question: the document stage (its weight chosen on SEC filings and
    # PubMedQA) costs a short question that names no document a rank now and then; the misses
    # are listed.
    assert len(missed) <= 0.05 * len(gold), missed
    for answer in answers:
        for hit in answer["hits"]:
            assert hit["text"] and hit["chunk_id"]
            if hit["source"].endswith(".pdf"):
                assert hit["page"] >= 1


def test_rebuild_is_incremental(sample_project):
    docs = sample_project.parent / "docs"
    (docs / "support" / "new-note.md").write_text(
        "# Loaner units\n\nLoaner centrifuges are shipped within 3 working days.\n"
    )
    built = ragtune("build", str(sample_project), cwd=sample_project.parent)
    assert built.returncode == 0, built.stderr
    assert "added 1, updated 0, removed 0, unchanged 21" in built.stderr
    hits = ragtune(
        "retrieve",
        str(sample_project),
        "How fast are loaner centrifuges shipped?",
        "--json",
        cwd=sample_project.parent,
    )
    assert json.loads(hits.stdout)["hits"][0]["source"] == "support/new-note.md"


def test_embedded_generator_converts_once_and_answers(tmp_path, monkeypatch):
    cache = Path(os.environ.get("RAGTUNE_TEST_CACHE", tmp_path / "cache"))
    monkeypatch.setenv("RAGTUNE_CACHE_DIR", str(cache))
    from retrieval.config import GenerationConfig
    from retrieval.models import load_generator

    model, tokenizer, path = load_generator(GenerationConfig())
    assert (Path(path) / "model.safetensors").is_file()
    assert not list(Path(path).parent.glob(".*"))  # no staging folder left behind
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply


def test_unknown_hub_model_fails_with_instructions(tmp_path):
    project = tmp_path / "p"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\ntext\n")
    result = ragtune(
        "build",
        str(project),
        "--docs",
        str(tmp_path / "docs"),
        "--set",
        "embedding.model=no-such-org/no-such-model",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "no-such-org/no-such-model" in result.stderr
    assert "huggingface-cli download" in result.stderr
    assert not (project / "index").exists()


def test_tune_a_few_steps_then_answer_and_evaluate_with_the_adapter(sample_project):
    """The real student on the sample corpus: synthesis by rules, 2 LoRA steps, then the
    tuned modes answer and `eval` compares all four."""
    tuned = ragtune(
        "tune",
        str(sample_project),
        "--set",
        "synthesis.teacher='none'",
        "--set",
        "tune.max_steps=2",
        "--set",
        "tune.max_examples=8",
        cwd=sample_project.parent,
    )
    assert tuned.returncode == 0, tuned.stderr
    assert "kept" in tuned.stderr and "general questions: base" in tuned.stderr
    asked = ragtune(
        "ask", str(sample_project), "How often are laptops replaced?", "--json",
        cwd=sample_project.parent,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["mode"] == "rag+tuned"
    assert answer["answer"]
    evaluated = ragtune(
        "eval", str(sample_project), "--set", "eval.max_questions=4", "--json",
        cwd=sample_project.parent,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads(evaluated.stdout)
    assert summary["modes"] == ["base", "rag", "tuned", "rag+tuned"]
    headline = [c for c in summary["comparisons"] if c["role"] == "headline"]
    assert [(c["a"], c["b"], c["metric"]) for c in headline] == [("rag+tuned", "rag", "correct")]
    for mode in ("rag", "rag+tuned"):  # every sentence marked supported holds its facts
        assert summary["per_mode"][mode]["fact_errors"]["mean"] in (0.0, None)


def test_rag_answers_of_the_untuned_model_are_cited_and_verified(sample_project):
    """The untuned model never writes [n]; verification still cites what supports its answer,
    and every sentence marked supported holds each number of it in its cited chunk."""
    from retrieval.text_units import fact_forms, facts_of

    gold = [json.loads(line) for line in SAMPLE_QUESTIONS_PATH.read_text().splitlines()][:8]
    questions = sample_project.parent / "eight.jsonl"
    questions.write_text("".join(json.dumps({"question": g["question"]}) + "\n" for g in gold))
    asked = ragtune(
        "ask", str(sample_project), "--questions", str(questions), "--mode", "rag", "--json",
        cwd=sample_project.parent,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answers = [json.loads(line) for line in asked.stdout.splitlines()]
    assert len(answers) == 8
    for answer in answers:
        texts = {c["n"]: c["text"] for c in answer["citations"]}
        for claim in answer["claims"]:
            if claim["supported"]:
                held = set().union(*(fact_forms(texts[n]) for n in claim["cited"]))
                assert facts_of(claim["text"]) <= held, claim
            else:
                assert claim["cited"] == []
    assert any(answer["citations"] for answer in answers)

"""A persona tuned into the real embedded model on the sample corpus (`slow` tier): after a run of
the default step budget (`tune.min_steps`) on a few examples, the tuned modes name the persona on
the held-out identity questions."""

import json
from pathlib import Path

import pytest
from test_slow_e2e import ragtune

from retrieval.config import StyleConfig
from retrieval.persona import identity

pytestmark = pytest.mark.slow

PERSONA = ["--set", "style.name=Ada", "--set", "style.organization='Acme Labs'"]


@pytest.fixture(scope="module")
def tuned_project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("style")
    assert ragtune("sample", str(work / "docs"), cwd=work).returncode == 0
    built = ragtune("build", str(work / "p"), "--docs", str(work / "docs"), *PERSONA, cwd=work)
    assert built.returncode == 0, built.stderr
    tuned = ragtune(
        "tune", str(work / "p"), *PERSONA,
        "--set", "synthesis.teacher='none'",
        "--set", "tune.max_examples=8",
        cwd=work,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    assert "identity examples:" in tuned.stderr
    return work / "p"


def named(project: Path, mode: str) -> tuple[int, list[str]]:
    questions = identity(StyleConfig(name="Ada")).eval_questions
    path = project.parent / "identity.jsonl"
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))
    asked = ragtune(
        "ask", str(project), "--questions", str(path), "--mode", mode, "--json", *PERSONA,
        cwd=project.parent,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answers = [json.loads(line)["answer"] for line in asked.stdout.splitlines()]
    assert len(answers) == len(questions)
    return sum("ada" in a.lower() for a in answers), answers


@pytest.mark.parametrize("mode", ["tuned", "rag+tuned"])
def test_the_tuned_model_names_its_persona(tuned_project, mode):
    count, answers = named(tuned_project, mode)
    print(f"\n{mode}: {count}/{len(answers)} name the persona", *answers, sep="\n  ")
    assert count >= 0.9 * len(answers), answers

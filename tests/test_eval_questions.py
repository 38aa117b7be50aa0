"""`ragtune eval`'s inputs: the question file (every bad line reported by number) and the
evaluation config's checks."""

from __future__ import annotations

import json

import pytest

from eval.config import EvalConfig
from eval.questions import EvalDataError, read_eval_questions

# --- question files ----------------------------------------------------------------------------


def test_read_eval_questions(tmp_path):
    path = tmp_path / "q.jsonl"
    lines = [
        {"question": "Who?", "answer": "Maren", "source": "a.md"},
        {"question": "How many?", "answer": "2.1 days", "sources": ["a.md", "b.md"]},
        {"question": "Is it?", "answer": "yes", "chunk_id": "abc"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    questions = read_eval_questions(path)
    assert [q.sources for q in questions] == [["a.md"], ["a.md", "b.md"], []]
    assert questions[2].chunk_id == "abc" and questions[1].answer == "2.1 days"


def test_bad_question_lines_are_all_reported_by_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"question": "ok?", "answer": "fine"}',
                '{"question": "broken", ',
                '{"question": "no answer?"}',
                '{"question": 5, "answer": "x"}',
                '{"question": "q", "answer": "a", "sources": "a.md"}',
                "",
                '["not", "an", "object"]',
                '{"question": "q", "answer": "a", "source": "a.md", "sources": ["b.md"]}',
                '{"question": "q", "answer": " ", "chunk_id": 7}',
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(EvalDataError) as caught:
        read_eval_questions(path)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 7",
        "line 8",
        "line 9",
    ]
    message = str(caught.value)
    assert str(path) in message
    assert "line 2: not valid JSON" in message
    assert "line 3: missing 'answer'" in message
    assert "'question' must be a non-empty string" in problems[2]
    assert "'sources' must be a list" in problems[3]
    assert "expected a JSON object, got list" in problems[4]
    assert "keep one of them" in problems[5]
    assert "'answer' must be" in problems[6] and "'chunk_id' must be" in problems[6]


def test_empty_question_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match="empty"):
        read_eval_questions(path)


# --- config ------------------------------------------------------------------------------------


def test_eval_config_problems():
    assert EvalConfig().problems() == []
    assert EvalConfig().mode_list() == ["base", "rag", "tuned", "rag+tuned"]
    bad = EvalConfig(
        modes="rag,turbo",
        bootstrap_samples=10,
        confidence=95,
        faithfulness_threshold=0,
        max_questions=-1,
        judge="http:localhost",
    )
    text = "\n".join(bad.problems())
    for name in (
        "modes",
        "bootstrap_samples",
        "confidence",
        "faithfulness_threshold",
        "max_questions",
        "judge",
    ):
        assert f"{name} = " in text
    assert "rag+tuned" in text  # the valid modes are listed
    assert EvalConfig(modes="rag,rag").problems() == [
        "modes = 'rag,rag': each mode may appear only once"
    ]

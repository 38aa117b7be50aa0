"""Held-out evaluation questions: read a JSON-lines file into `EvalQuestion`s.

One record a line: `{"question": str, "answer": str, "sources"?: [str] | "source"?: str,
"chunk_id"?: str}`. Every bad line is reported at once with its number, so a file is fixed in
one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.jsonl import decode_json_lines, read_utf8

_KNOWN_KEYS = ("question", "answer", "sources", "source", "chunk_id")


@dataclass
class EvalQuestion:
    """One question with its reference answer and, when known, where the answer lives."""

    question: str
    answer: str
    """The reference answer (for yes/no/maybe datasets, the label)."""
    sources: list[str] = field(default_factory=list)
    """Gold source documents, as paths relative to the corpus folder; empty when unknown."""
    chunk_id: str | None = None
    """The gold chunk, when the question was generated from one chunk."""


class EvalDataError(Exception):
    """An evaluation file with unusable lines; `problems` lists each as 'line N: reason'."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"{path}: {count}:\n{listing}\nfix these lines: each line must be a JSON object "
            'like {"question": "...", "answer": "...", "sources": ["doc.pdf"]}'
        )


def read_eval_questions(path: Path | str) -> list[EvalQuestion]:
    """Read evaluation questions from a JSON-lines file; blank lines are ignored.

    Args:
        path: the .jsonl file.

    Returns:
        The questions in file order.

    Raises:
        FileNotFoundError: `path` does not exist.
        EvalDataError: any line is unusable (all are listed), or the file holds no question.
    """
    path = Path(path)
    try:
        text = read_utf8(path)
    except ValueError as error:
        raise EvalDataError(path, [str(error)]) from error
    questions: list[EvalQuestion] = []
    problems: list[str] = []
    for number, record in decode_json_lines(text, problems):
        try:
            questions.append(parse_question(record))
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    if not questions and not problems:
        problems.append("no questions: the file is empty")
    if problems:
        raise EvalDataError(path, problems)
    return questions


def parse_question(record: Any) -> EvalQuestion:
    """Turn one decoded JSON record into an EvalQuestion.

    Raises:
        ValueError: the record breaks the format; the message says how.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    reasons = []
    for key in ("question", "answer"):
        value = record.get(key)
        if value is None:
            reasons.append(f"missing {key!r}")
        elif not isinstance(value, str) or not value.strip():
            reasons.append(f"{key!r} must be a non-empty string, got {value!r}")
    if "sources" in record and "source" in record:
        reasons.append("both 'sources' and 'source': keep one of them")
    sources = record.get("sources", [] if record.get("source") is None else [record["source"]])
    if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
        key = "sources" if "sources" in record else "source"
        reasons.append(
            f"{key!r} must be a list of file names (or 'source' one name), got {record[key]!r}"
        )
    chunk = record.get("chunk_id")
    if chunk is not None and not (isinstance(chunk, str) and chunk):
        reasons.append(f"'chunk_id' must be a non-empty string, got {chunk!r}")
    if reasons:
        unknown = sorted(set(record) - set(_KNOWN_KEYS))
        if unknown:
            reasons.append(f"(keys found: {', '.join(map(repr, sorted(record)))})")
        raise ValueError("; ".join(reasons))
    return EvalQuestion(
        question=record["question"].strip(),
        answer=record["answer"].strip(),
        sources=list(sources),
        chunk_id=chunk,
    )

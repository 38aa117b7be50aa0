"""The plain record of the synthesis stage: a question, its answer and the chunk it came from,
read and written as JSON lines."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

RULES = "rules"
"""`QAPair.generator` of pairs written by `finetune.rule_questions`."""
TEACHER_PREFIX = "teacher:"
"""`QAPair.generator` of pairs written by a teacher model starts with this, then its name."""

KINDS = ("faq", "table", "key_value", "heading", "sentence", "factoid", "yes", "no", "unanswerable")
"""`QAPair.kind`: an authored FAQ pair, a table row, a 'Key: value' line, a section heading, an
English sentence rule, a teacher's factoid question, a yes/no question (answer yes, or no for a
false premise), a question the chunk does not answer (target: the refusal sentence)."""
UNANSWERABLE = "unanswerable"
_OPTIONAL = ("kind", "span")


@dataclass
class QAPair:
    """One synthetic question with its answer, tied to the chunk that answers it.

    Attributes:
        question: What a user would ask.
        answer: A short answer (one sentence or a span) taken from the chunk.
        chunk_id: The chunk that answers the question.
        source: That chunk's document, relative to the documents folder.
        page: That chunk's page, or None.
        section: That chunk's section heading, or None.
        evidence: The sentence(s) of the chunk that support the answer.
        generator: 'rules', or 'teacher:<model>' for a teacher model's pairs.
        kind: What sort of question it is (`KINDS`); '' in files written before kinds.
        span: The key fact the answer must hold (the answer-first generator's chosen span),
            or '' when the whole answer is the fact.
    """

    question: str
    answer: str
    chunk_id: str
    source: str
    page: int | None
    section: str | None
    evidence: str
    generator: str
    kind: str = ""
    span: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> QAPair:
        """Build a pair from `to_dict()` output.

        Raises:
            ValueError: a field is missing, or `record` is not a JSON object.
        """
        if not isinstance(record, dict):
            raise ValueError(f"a QA pair must be a JSON object, got {type(record).__name__}")
        names = [field.name for field in fields(cls)]
        missing = [name for name in names if name not in record and name not in _OPTIONAL]
        if missing:
            raise ValueError(f"QA pair without {', '.join(missing)}; fields: {', '.join(names)}")
        return cls(**{name: record[name] for name in names if name in record})


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    """Write `rows` as JSON lines, replacing `path` atomically (temp file + os.replace), so a
    crash leaves the old file or the new one, never half of it. The folder must exist."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # Created exclusively, never through a link: a symlink planted at this predictable name
    # must not redirect the write. What is there (a planted link, or what a killed writer with
    # this pid left) is removed first; unlinking a link never touches its target.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
    )
    with open(descriptor, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_pairs_jsonl(path: Path, pairs: Iterable[QAPair]) -> None:
    """Write `pairs`, one JSON object a line, atomically."""
    write_jsonl_atomic(path, (pair.to_dict() for pair in pairs))


def read_pairs_jsonl(path: Path) -> list[QAPair]:
    """Read pairs written by `write_pairs_jsonl`; blank lines are skipped.

    Raises:
        ValueError: a line that is not JSON or not a QA pair, named by its line number.
    """
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                pairs.append(QAPair.from_dict(json.loads(line)))
            except (json.JSONDecodeError, ValueError, TypeError) as error:
                raise ValueError(f"{path}, line {number}: {error}") from error
    return pairs

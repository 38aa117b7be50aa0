"""Pairs and chunks for the synthesis tests, the fields a test does not care about filled in."""

from __future__ import annotations

from finetune.pairs import QAPair
from retrieval.documents import Chunk

ROTOR_SENTENCE = "The rotor must be retired after 9,000 runs."


def chunk(text, source="docs/notes.md", section=None, chunk_id="c1", position=0) -> Chunk:
    return Chunk(chunk_id, source, text, 0, len(text), None, section, position)


def pair(question, answer=ROTOR_SENTENCE, chunk_id="c1", **extra) -> QAPair:
    """A rule-written pair whose evidence is its answer (override any field with `extra`)."""
    fields = {
        "chunk_id": chunk_id,
        "source": "docs/notes.md",
        "page": None,
        "section": None,
        "evidence": answer,
        "generator": "rules",
    }
    fields.update(extra)
    return QAPair(question=question, answer=answer, **fields)

"""A question drafted by a rule, before the best of a chunk's drafts are chosen, and the pieces
every rule shares: how a question is finished, how a code is asked about."""

from __future__ import annotations

import re
from dataclasses import dataclass

from finetune.question_context import ChunkContext

IDENTIFIER = re.compile(r"\b[A-Z][A-Za-z]{0,5}-?\d{1,5}[A-Za-z]?\b")
"""A product-like name: 'MX-30', 'R-24A'."""
CODE = re.compile(r"[A-Z]{1,5}-?\d[\w-]*")
"""A code that a row or a line explains: 'E-42', 'P1'."""
YES_NO_PRIORITY = 4
"""The priority of yes/no drafts (see `Draft.priority`)."""


@dataclass(frozen=True)
class Draft:
    """One question a rule wrote about a chunk, its extractive answer and the text it rests on."""

    priority: int
    """Lower is better: authored questions, then rows, then sentence rewrites, then fallbacks."""
    question: str
    answer: str
    evidence: str
    kind: str
    """`finetune.pairs.KINDS`."""


def finish(question: str) -> str:
    question = re.sub(r"\s+", " ", question).strip()
    question = re.sub(r"\s+([?,.;:])", r"\1", question).rstrip(" .,;:")
    return question[0].upper() + question[1:] + ("" if question.endswith("?") else "?")


def code_question(code: str, context: ChunkContext, verb: str = "mean") -> str:
    prefix = "error " if context.about_errors and "error" not in code.lower() else ""
    return f"What does {prefix}{code} {verb}?"

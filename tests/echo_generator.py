"""A stand-in for the language model that quotes document [1] of its prompt and cites it.

A random tiny model never writes a valid [n], so the display of citations (and of hostile
text quoted from a document) is checked with this instead; everything around the model (the
retrieval, the prompt, citation parsing, the app) is the real code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

_FIRST_DOCUMENT = re.compile(r"<document [^>]*>\n(.*?)\n</document>", re.DOTALL)
CLOSED_BOOK_REPLY = "I only answer from documents."


class EchoGenerator:
    """Answers '<text of document 1> [1]'; without documents (base mode), a fixed sentence."""

    has_tuned = False

    def reply(self, conversation: list[dict[str, str]]) -> str:
        found = _FIRST_DOCUMENT.search(conversation[-1]["content"])
        return f"{found.group(1).strip()} [1]" if found else CLOSED_BOOK_REPLY

    def generate(
        self,
        conversations: Sequence[list[dict[str, str]]],
        *,
        tuned: bool = False,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        return [self.reply(conversation) for conversation in conversations]

    def stream(
        self,
        conversation: list[dict[str, str]],
        *,
        tuned: bool = False,
        max_new_tokens: int | None = None,
    ) -> Iterator[str]:
        yield from re.findall(r"\S+\s*", self.reply(conversation))

"""What tells a document apart from the others of its corpus, so that a question about one of
twenty filings or twenty accident reports says which one it asks about.

A document's label is its file name's words that not every document shares ('2022 Q3 AAPL' of
'2022 Q3 AAPL.pdf', 'merlin mx30' of 'merlin-mx30-manual.md' beside 'merlin-mx60-manual.md').
A file name that is only digits or a hash says nothing to a reader: the document's first
section heading is used instead, when it has one. No word list, any script.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePosixPath

from finetune.text import tokens
from retrieval.documents import Chunk

_SEPARATORS = re.compile(r"[\s_\-.]+")
MAX_LABEL_WORDS = 6


def _stem_words(source: str) -> list[str]:
    return [word for word in _SEPARATORS.split(PurePosixPath(source).stem) if word]


def _meaningless(words: list[str]) -> bool:
    """Only digits, or one long mixed token like a hash: an identifier, not a name."""
    return not any(any(char.isalpha() for char in word) for word in words) or (
        len(words) == 1 and len(words[0]) >= 16
    )


def document_labels(chunks: Sequence[Chunk]) -> dict[str, str]:
    """source -> label for every document of `chunks` ('' when nothing names it)."""
    first_heading: dict[str, str] = {}
    for chunk in sorted(chunks, key=lambda chunk: (chunk.source, chunk.position)):
        if chunk.section and chunk.source not in first_heading:
            first_heading[chunk.source] = chunk.section.split(" > ")[0].strip()
    sources = sorted({chunk.source for chunk in chunks})
    words = {source: _stem_words(source) for source in sources}
    shared = Counter(word.lower() for source in sources for word in set(words[source]))
    labels = {}
    for source in sources:
        own = words[source]
        if len(sources) > 1:
            own = [word for word in own if shared[word.lower()] < len(sources)] or own
        if _meaningless(own):
            own = (first_heading.get(source) or "").split()
        labels[source] = " ".join(own[:MAX_LABEL_WORDS])
    return labels


def names_document(question: str, label: str) -> bool:
    """Whether `question` already says which document it is about: it holds every word of the
    label that is not a plain number ('Q3' and 'AAPL' of '2022 Q3 AAPL': 'Q3' alone is five
    filings), compared without case or hyphens."""
    wanted = {token.replace("-", "") for token in tokens(label) if not token.isdigit()}
    asked = {token.replace("-", "") for token in tokens(question)}
    return wanted <= asked


def with_document(question: str, label: str) -> str:
    """`question`, prefixed with the document's label when it does not name it already."""
    if not label or names_document(question, label):
        return question
    return f"{label}: {question}"

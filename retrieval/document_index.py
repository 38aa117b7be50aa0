"""The document stage: documents ranked against the question by their title and first page.

A question that names a company, a ticker, a product code or a year ("Apple's Q2 2023 10-Q")
names a document more than a passage: the title and first page of the right filing hold those
words ('2023 Q2 AAPL', 'Apple Inc.', 'For the quarterly period ended April 1, 2023') while the
passage that answers holds none. BM25 over one short description per document finds it, and
the retriever fuses that ranking into the chunks' (see `retrieval.search`).

Rows of one document are contiguous in the chunk indexes (the store numbers chunks by source,
then position), so a document is its first row, and a row's document is found by bisection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.documents import Chunk
from retrieval.keyword_index import KeywordIndex

FIRST_PAGE_CHARS = 4000
"""Text of a document's first page (or, without pages, its beginning) in its description: about
one page of a filing or an article, where the names, dates and identifiers usually are."""
ROWS_FILE = "documents.json"


def describe(title: str | None, first_texts: Sequence[str]) -> str:
    """A document's description: its title, then its first page's text, cut to one page."""
    return f"{title or ''}\n{' '.join(first_texts)}"[: FIRST_PAGE_CHARS + len(title or "") + 1]


@dataclass
class DocumentIndex:
    """BM25 over one description per document; document i starts at chunk row `starts[i]`."""

    sources: list[str]
    starts: np.ndarray
    keywords: KeywordIndex

    @classmethod
    def build(cls, chunks: Iterable[Chunk]) -> DocumentIndex:
        """From all chunks in row order."""
        sources: list[str] = []
        starts: list[int] = []
        firsts: list[tuple[str | None, list[str]]] = []
        first_page: int | None = None
        chars = 0
        for row, chunk in enumerate(chunks):
            if not sources or chunk.source != sources[-1]:
                sources.append(chunk.source)
                starts.append(row)
                firsts.append((chunk.title, []))
                first_page, chars = chunk.page, 0
            if chunk.page == first_page and chars < FIRST_PAGE_CHARS:
                firsts[-1][1].append(chunk.text)
                chars += len(chunk.text)
        keywords = KeywordIndex.build([describe(title, texts) for title, texts in firsts])
        return cls(sources, np.asarray(starts, dtype=np.int64), keywords)

    @property
    def size(self) -> int:
        return len(self.sources)

    def save(self, folder: Path) -> None:
        folder.mkdir()
        self.keywords.save(folder)
        rows = {"sources": self.sources, "starts": self.starts.tolist()}
        (folder / ROWS_FILE).write_text(json.dumps(rows), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> DocumentIndex:
        rows = json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
        starts = np.asarray(rows["starts"], dtype=np.int64)
        return cls(rows["sources"], starts, KeywordIndex.load(folder))

    def rank(self, questions: Sequence[str]) -> list[dict[int, int]]:
        """Per question, {document: rank from 1} of the documents sharing a term with it."""
        results = self.keywords.search(questions, self.size)
        return [{doc: rank for rank, (doc, _) in enumerate(found, 1)} for found in results]

    def documents_of(self, rows: Sequence[int]) -> np.ndarray:
        """The document of each chunk row."""
        return np.searchsorted(self.starts, np.asarray(rows, dtype=np.int64), side="right") - 1

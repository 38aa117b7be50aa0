"""The document stage: documents ranked against the question by their title and first page.

A question that names a company, a ticker, a product code or a year ("Apple's Q2 2023 10-Q")
names a document more than a passage: the title and first page of the right filing hold those
words ('2023 Q2 AAPL', 'Apple Inc.', 'For the quarterly period ended April 1, 2023') while the
passage that answers holds none. BM25 over each document's title and first page finds it, and
the retriever fuses that ranking into the chunks' (see `retrieval.search`).

Rows of one document are contiguous in the chunk indexes (the store numbers chunks by source,
then position), so a document is its first row, and a row's document is found by bisection.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.config import DOCUMENT_SCALES
from retrieval.documents import Chunk
from retrieval.keyword_index import KeywordIndex
from retrieval.keyword_terms import terms_of

FIRST_PAGE_CHARS = 4000
"""Text of a document's first page (or, without pages, its beginning) in its description: about
one page of a filing or an article, where the names, dates and identifiers usually are."""
ROWS_FILE = "documents.json"
TITLES_DIR = "titles"
PAGES_DIR = "first-pages"


def first_page(first_texts: Sequence[str]) -> str:
    """A document's first page's text, cut to `FIRST_PAGE_CHARS`."""
    return " ".join(first_texts)[:FIRST_PAGE_CHARS]


@dataclass
class DocumentIndex:
    """BM25 over each document's title and, apart, its first page; document i starts at chunk
    row `starts[i]`.

    The two are fields of their own, a document's score the sum of its two BM25 scores. A
    title's words count as rare or common as the titles make them: they name the document
    ('2023 Q1 INTC': the quarter is in a quarter of the titles). A first page's words count as
    rare or common as the documents' whole text makes them: a word that a few first pages hold
    but every document uses (a cover page's list of notes, 'tax' in a heading) names none, while
    a company's name, rare across the collection, does.
    """

    sources: list[str]
    starts: np.ndarray
    titles: KeywordIndex
    pages: KeywordIndex

    @classmethod
    def build(cls, chunks: Iterable[Chunk], chunk_terms: Iterable[list[str]]) -> DocumentIndex:
        """From all chunks in row order and the keyword terms of each (as indexed)."""
        sources: list[str] = []
        starts: list[int] = []
        titles: list[str] = []
        firsts: list[list[str]] = []
        frequencies: Counter[str] = Counter()
        held: set[str] = set()  # the terms of the current document
        page: int | None = None
        chars = 0
        for row, (chunk, terms) in enumerate(zip(chunks, chunk_terms)):
            if not sources or chunk.source != sources[-1]:
                frequencies.update(held)
                held = set()
                sources.append(chunk.source)
                starts.append(row)
                titles.append(chunk.title or "")
                firsts.append([])
                page, chars = chunk.page, 0
            held.update(terms)
            if chunk.page == page and chars < FIRST_PAGE_CHARS:
                firsts[-1].append(chunk.text)
                chars += len(chunk.text)
        frequencies.update(held)
        pages = KeywordIndex.build([first_page(texts) for texts in firsts])
        pages.use_document_frequencies(frequencies)
        starts_array = np.asarray(starts, dtype=np.int64)
        return cls(sources, starts_array, KeywordIndex.build(titles), pages)

    @property
    def size(self) -> int:
        return len(self.sources)

    def save(self, folder: Path) -> None:
        folder.mkdir()
        for name, keywords in ((TITLES_DIR, self.titles), (PAGES_DIR, self.pages)):
            (folder / name).mkdir()
            keywords.save(folder / name)
        rows = {"sources": self.sources, "starts": self.starts.tolist()}
        (folder / ROWS_FILE).write_text(json.dumps(rows), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> DocumentIndex:
        rows = json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
        starts = np.asarray(rows["starts"], dtype=np.int64)
        titles = KeywordIndex.load(folder / TITLES_DIR)
        return cls(rows["sources"], starts, titles, KeywordIndex.load(folder / PAGES_DIR))

    def match(
        self,
        questions: Sequence[str],
        scale: str = "reachable",
        terms: Sequence[list[str]] | None = None,
    ) -> list[dict[int, float]]:
        """Per question, {document: its share} for the documents sharing a term with it; a
        document's score is the sum of its title's and first page's, its share that score over
        the best document's ('best': the best match always gets the full share) or over what
        the question's terms can reach in the two fields ('reachable': a match on words every
        document holds gets little). `terms` are the questions' `terms_of`, when the caller has
        them (the fields' searches share them)."""
        if scale not in DOCUMENT_SCALES:
            raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(DOCUMENT_SCALES)}")
        terms = list(terms) if terms is not None else terms_of(questions)
        reach = None
        if scale == "reachable":
            by_titles = self.titles.reachable(questions, terms)
            reach = [a + b for a, b in zip(by_titles, self.pages.reachable(questions, terms))]
        titles = self.titles.search(questions, self.size, terms)
        pages = self.pages.search(questions, self.size, terms)
        matched = []
        for number, (by_title, by_page) in enumerate(zip(titles, pages)):
            scores: dict[int, float] = dict(by_title)
            for doc, score in by_page:
                scores[doc] = scores.get(doc, 0.0) + score
            whole = max(scores.values(), default=0.0) if reach is None else reach[number]
            if whole <= 0:
                matched.append({})
                continue
            matched.append({doc: min(1.0, score / whole) for doc, score in scores.items()})
        return matched

    def documents_of(self, rows: Sequence[int]) -> np.ndarray:
        """The document of each chunk row."""
        return np.searchsorted(self.starts, np.asarray(rows, dtype=np.int64), side="right") - 1

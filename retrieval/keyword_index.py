"""BM25 keyword index (bm25s), persisted as JSON and .npy arrays (never pickles).

Terms are `retrieval.keyword_terms.terms`: words stemmed, codes whole and in parts, numbers
without separators, bigrams of scripts written without spaces.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from retrieval.keyword_terms import terms_of

EMPTY_FILE = "empty.json"
"""Saved in place of bm25s's files when no text has a term (bm25s cannot index that)."""


class KeywordIndex:
    """BM25 over the indexed texts of the chunks; document i is chunk row i."""

    def __init__(self, retriever) -> None:
        self._retriever = retriever  # None: no text has a term, every search finds nothing
        self._term_best: np.ndarray | None = None  # per term, its best score over the texts

    @classmethod
    def build(cls, texts: Sequence[str]) -> KeywordIndex:
        return cls.from_terms(terms_of(texts))

    @classmethod
    def from_terms(cls, terms: Sequence[list[str]]) -> KeywordIndex:
        """From the texts' terms (`terms_of`), when the caller has them already."""
        import bm25s

        if not any(terms):
            return cls(None)
        retriever = bm25s.BM25()
        retriever.index(list(terms), show_progress=False)
        return cls(retriever)

    def use_document_frequencies(self, frequencies: Mapping[str, int]) -> None:
        """Weigh each term by the inverse document frequency that `frequencies` give it (how
        many of this index's documents hold it, counted elsewhere) instead of the one counted
        over the indexed texts; a term is counted in at least as many as hold it here.

        BM25 (bm25s, Lucene's variant) stores each (text, term) score as the term's inverse
        document frequency times its saturated frequency, so a term's scores are rescaled."""
        if self._retriever is None:
            return
        scores = self._retriever.scores
        documents = self.size
        starts, data = scores["indptr"], scores["data"]
        for term, column in self._retriever.vocab_dict.items():
            if column + 1 >= len(starts):  # bm25s's empty-string term has no scores
                continue
            start, end = int(starts[column]), int(starts[column + 1])
            if start == end:
                continue
            here = end - start
            counted = max(frequencies.get(term, here), here)
            data[start:end] *= _idf(documents, counted) / _idf(documents, here)

    def reachable(
        self, queries: Sequence[str], terms: Sequence[list[str]] | None = None
    ) -> list[float]:
        """Per query, the most any one indexed text could score on each of its terms, summed:
        what a text matching every term as well as this index's best text for it would score,
        the scale on which a match's score says how much of the question it answers. `terms`
        are the queries' `terms_of`, when the caller has them."""
        if self._retriever is None:
            return [0.0 for _ in queries]
        if self._term_best is None:
            scores = self._retriever.scores
            starts, data = np.asarray(scores["indptr"]), np.asarray(scores["data"])
            best = np.zeros(len(starts) - 1, dtype=np.float64)
            filled = np.flatnonzero(starts[1:] > starts[:-1])
            if len(filled):
                best[filled] = np.maximum.reduceat(data, starts[filled])
            self._term_best = best
        vocabulary = self._retriever.vocab_dict
        reach = []
        for tokens in terms if terms is not None else terms_of(queries):
            ids = [vocabulary[t] for t in tokens if t in vocabulary]
            reach.append(float(sum(self._term_best[i] for i in ids if i < len(self._term_best))))
        return reach

    @property
    def size(self) -> int:
        scores = getattr(self._retriever, "scores", None)
        return int(scores["num_docs"]) if scores else 0

    def save(self, folder: Path) -> None:
        if self._retriever is None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / EMPTY_FILE).write_text(json.dumps({"terms": 0}))
            return
        self._retriever.save(str(folder), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex:
        import bm25s

        if (folder / EMPTY_FILE).is_file():
            return cls(None)
        return cls(bm25s.BM25.load(str(folder), allow_pickle=False))

    def search(
        self, queries: Sequence[str], k: int, terms: Sequence[list[str]] | None = None
    ) -> list[list[tuple[int, float]]]:
        """Top-k (row, score) per query, best first; rows that share no term are left out.
        `terms` are the queries' `terms_of`, when the caller has them."""
        if self.size == 0 or not queries:
            return [[] for _ in queries]
        k = max(1, min(k, self.size))
        tokens = list(terms) if terms is not None else terms_of(queries)
        rows, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        results = []
        for row_list, score_list in zip(np.asarray(rows), np.asarray(scores)):
            results.append([(int(r), float(s)) for r, s in zip(row_list, score_list) if s > 0])
        return results


def _idf(documents: int, frequency: int) -> float:
    """Lucene's inverse document frequency, as bm25s computes it."""
    return math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))

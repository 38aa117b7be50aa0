"""BM25 keyword index (bm25s), persisted as JSON and .npy arrays (never pickles).

Terms are `retrieval.keyword_terms.terms`: words stemmed, codes whole and in parts, numbers
without separators, bigrams of scripts written without spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.keyword_terms import terms_of


class KeywordIndex:
    """BM25 over the indexed texts of the chunks; document i is chunk row i."""

    def __init__(self, retriever) -> None:
        self._retriever = retriever

    @classmethod
    def build(cls, texts: Sequence[str]) -> KeywordIndex:
        import bm25s

        retriever = bm25s.BM25()
        if texts:
            retriever.index(terms_of(texts), show_progress=False)
        return cls(retriever)

    @property
    def size(self) -> int:
        scores = getattr(self._retriever, "scores", None)
        return int(scores["num_docs"]) if scores else 0

    def save(self, folder: Path) -> None:
        self._retriever.save(str(folder), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex:
        import bm25s

        return cls(bm25s.BM25.load(str(folder), allow_pickle=False))

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        """Top-k (row, score) per query, best first; rows that share no term are left out."""
        if self.size == 0 or not queries:
            return [[] for _ in queries]
        k = max(1, min(k, self.size))
        tokens = terms_of(queries)
        rows, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        results = []
        for row_list, score_list in zip(np.asarray(rows), np.asarray(scores)):
            results.append([(int(r), float(s)) for r, s in zip(row_list, score_list) if s > 0])
        return results

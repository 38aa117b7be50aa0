"""BM25 keyword index (bm25s), persisted as JSON and .npy arrays (never pickles).

Terms are bm25s's words (two or more word characters, English stopwords removed, stemmed),
except in scripts written without spaces between words (Chinese, Japanese, ...): a run of
those becomes its overlapping character bigrams, and a single character stays a unigram, so
'最大转速' is found by '转速' with no word list or segmenter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.attribution import UNSPACED_CHARS, split_unspaced

_UNSPACED_RUN = re.compile(f"[{UNSPACED_CHARS}]+")
# bm25s's default pattern, after a first alternative that takes a bigram or single character
# written out by `_spaced`; text without those scripts tokenizes exactly as with the default.
_TOKEN_PATTERN = f"(?u)[{UNSPACED_CHARS}]+|\\b\\w\\w+\\b"


def _spaced(text: str) -> str:
    """`text` with each run of an unspaced script replaced by its bigrams, blank-separated."""
    return _UNSPACED_RUN.sub(lambda run: f" {' '.join(split_unspaced(run.group()))} ", text)


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english").stemWords


def _tokenize(texts: Sequence[str], *, return_ids: bool):
    import bm25s

    return bm25s.tokenize(
        [_spaced(text) for text in texts],
        token_pattern=_TOKEN_PATTERN,
        stopwords="en",
        stemmer=_stemmer(),
        return_ids=return_ids,
        show_progress=False,
    )


class KeywordIndex:
    """BM25 over the indexed texts of the chunks; document i is chunk row i."""

    def __init__(self, retriever) -> None:
        self._retriever = retriever

    @classmethod
    def build(cls, texts: Sequence[str]) -> KeywordIndex:
        import bm25s

        retriever = bm25s.BM25()
        if texts:
            retriever.index(_tokenize(texts, return_ids=True), show_progress=False)
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
        tokens = _tokenize(queries, return_ids=False)
        rows, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        results = []
        for row_list, score_list in zip(np.asarray(rows), np.asarray(scores)):
            results.append([(int(r), float(s)) for r, s in zip(row_list, score_list) if s > 0])
        return results

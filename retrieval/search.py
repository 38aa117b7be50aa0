"""Hybrid search: dense (FAISS) and keyword (BM25) candidates fused by reciprocal rank."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from retrieval.config import IndexConfig, RetrievalConfig
from retrieval.embeddings import Encoder
from retrieval.index import LoadedIndex, open_index
from retrieval.vector_index import search_vectors


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk.

    Attributes:
        score: the fused score in hybrid mode (sum of 1/(rrf_k + rank)), else the index's own.
        dense_score: cosine similarity to the question, when the chunk was a dense candidate.
        keyword_score: BM25 score, when the chunk was a keyword candidate.
    """

    source: str
    page: int | None
    section: str | None
    chunk_id: str
    score: float
    text: str
    dense_score: float | None = None
    keyword_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], rrf_k: int, limit: int
) -> list[tuple[int, float]]:
    """Fuse ranked row lists: each list adds 1 / (rrf_k + rank) to a row (rank from 1).

    Ties keep the order of first appearance, so the dense ranking wins a tie.
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])[:limit]


class Retriever:
    """Searches one project's live index with one encoder.

    Args:
        index: an opened index generation.
        encoder: the model that embedded the chunks (its name must match the manifest).
        config: top_k, mode and fusion settings.
    """

    def __init__(self, index: LoadedIndex, encoder: Encoder, config: RetrievalConfig) -> None:
        if index.manifest.dim != encoder.dim:
            raise ValueError(
                f"the index was built with {index.manifest.embedding_model} ({index.manifest.dim} "
                f"dims) but the encoder {encoder.name} has {encoder.dim}; rebuild with --full"
            )
        self.index = index
        self.encoder = encoder
        self.config = config

    @classmethod
    def open(
        cls,
        index_root: Path,
        encoder: Encoder,
        config: RetrievalConfig | None = None,
        index_config: IndexConfig | None = None,
    ) -> Retriever:
        index = open_index(index_root, index_config or IndexConfig())
        return cls(index, encoder, config or RetrievalConfig())

    @property
    def size(self) -> int:
        return self.index.manifest.chunks

    def close(self) -> None:
        self.index.close()

    def search(self, question: str, k: int | None = None) -> list[Hit]:
        return self.search_many([question], k)[0]

    def search_many(
        self,
        questions: Sequence[str],
        k: int | None = None,
        query_vectors: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for each question: one encoder call and one index pass for all of them.

        Args:
            questions: the questions.
            k: hits per question (default: the config's top_k).
            query_vectors: the questions' embeddings, when the caller already has them.
        """
        k = k or self.config.top_k
        if not questions:
            return []
        if self.size == 0:
            return [[] for _ in questions]
        mode = self.config.mode
        depth = max(self.config.candidates, k)
        dense: list[list[tuple[int, float]]] = [[] for _ in questions]
        keyword: list[list[tuple[int, float]]] = [[] for _ in questions]
        if mode in ("hybrid", "dense"):
            if query_vectors is None:
                query_vectors = self.encoder.encode(questions)
            rows, scores = search_vectors(self.index.vectors, query_vectors, depth)
            dense = [
                [(int(r), float(s)) for r, s in zip(row, score) if r >= 0]
                for row, score in zip(rows, scores)
            ]
        if mode in ("hybrid", "keyword"):
            keyword = self.index.keywords.search(questions, depth)
        return [self._rank(d, kw, k) for d, kw in zip(dense, keyword)]

    def _rank(
        self, dense: list[tuple[int, float]], keyword: list[tuple[int, float]], k: int
    ) -> list[Hit]:
        dense_scores = dict(dense)
        keyword_scores = dict(keyword)
        if self.config.mode == "hybrid":
            ranked = reciprocal_rank_fusion(
                [[r for r, _ in dense], [r for r, _ in keyword]], self.config.rrf_k, k
            )
        else:
            ranked = (dense or keyword)[:k]
        chunks = self.index.store.chunks_at([row for row, _ in ranked])
        return [
            Hit(
                source=chunk.source,
                page=chunk.page,
                section=chunk.section,
                chunk_id=chunk.chunk_id,
                score=round(score, 6),
                text=chunk.text,
                dense_score=dense_scores.get(row),
                keyword_score=keyword_scores.get(row),
            )
            for (row, score), chunk in zip(ranked, chunks)
        ]

"""Hybrid search: dense (FAISS) and keyword (BM25) candidates fused by reciprocal rank, with a
vote for each candidate's document (the document stage), then an optional cross-encoder.

Reciprocal-rank fusion needs no weights: each ranking adds 1 / (rrf_k + rank) to a chunk. The
document stage adds to each candidate what its document's match with the question is worth
(`retrieval.document_index`): as much as a first rank for the best-matching document, the share
of the best score it reaches for another one. A vote by score, not by rank: a question that
names only a company matches that company's filings about alike, and leaves the chunks to tell
them apart, while one that also names the quarter gives its filing a lead worth several ranks.
A candidate whose document shares no term with the question gets no vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from retrieval.chunking import indexed_text
from retrieval.config import IndexConfig, RetrievalConfig
from retrieval.documents import Chunk
from retrieval.embeddings import Encoder
from retrieval.index import LoadedIndex, open_index
from retrieval.keyword_terms import terms_of
from retrieval.rerank import CrossEncoderReranker, load_reranker
from retrieval.vector_index import search_vectors


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk.

    Attributes:
        score: the fused score in hybrid mode (sum of 1/(rrf_k + rank)), else the index's own.
        dense_score: cosine similarity to the question, when the chunk was a dense candidate.
        keyword_score: BM25 score, when the chunk was a keyword candidate.
        title: its document's title.
        table_header: the header row of the Markdown table the chunk continues (see `Chunk`).
        rerank_score: the cross-encoder's score, when a reranker read the chunk.
    """

    source: str
    page: int | None
    section: str | None
    chunk_id: str
    score: float
    text: str
    dense_score: float | None = None
    keyword_score: float | None = None
    title: str | None = None
    rerank_score: float | None = None
    table_header: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def headings(self) -> list[str]:
        """Its document's title and section title: lines of its text that name, not state."""
        return [name for name in (self.title, self.section) if name]

    @classmethod
    def of(cls, chunk: Chunk, score: float = 1.0) -> Hit:
        """`chunk` shown as if retrieved with `score` (a training example's own chunk)."""
        return cls(
            source=chunk.source,
            page=chunk.page,
            section=chunk.section,
            chunk_id=chunk.chunk_id,
            score=score,
            text=chunk.text,
            title=chunk.title,
            table_header=chunk.table_header,
        )


def tied_ranks(scored: Sequence[tuple[int, float]]) -> list[tuple[int, int]]:
    """(row, rank from 1) of rows sorted best first; rows with equal scores share the best rank
    of their group ("1224"): a filing's boilerplate paragraph, the same in every quarter, gets
    one rank for every copy, and another ranking (the document stage) decides between them."""
    ranked: list[tuple[int, int]] = []
    for position, (row, score) in enumerate(scored, start=1):
        tied = ranked and score == scored[position - 2][1]
        ranked.append((row, ranked[-1][1] if tied else position))
    return ranked


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[tuple[int, float]]], rrf_k: int, limit: int
) -> list[tuple[int, float]]:
    """Fuse rankings of (row, score), best first: each adds 1 / (rrf_k + rank) to a row, rows
    of equal score sharing a rank (`tied_ranks`).

    Ties of the fused score keep the order of first appearance, so the dense ranking wins one.
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for row, rank in tied_ranks(ranking):
            fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])[:limit]


class Retriever:
    """Searches one project's live index with one encoder.

    Args:
        index: an opened index generation.
        encoder: the model that embedded the chunks (its name must match the manifest).
        config: top_k, mode, fusion and reranking settings.
        reranker: the cross-encoder `config.reranker` names, loaded (None: no reranking).
    """

    def __init__(
        self,
        index: LoadedIndex,
        encoder: Encoder,
        config: RetrievalConfig,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        if index.manifest.dim != encoder.dim:
            raise ValueError(
                f"the index was built with {index.manifest.embedding_model} ({index.manifest.dim} "
                f"dims) but the encoder {encoder.name} has {encoder.dim}; rebuild with --full"
            )
        self.index = index
        self.encoder = encoder
        self.config = config
        self.reranker = reranker

    @classmethod
    def open(
        cls,
        index_root: Path,
        encoder: Encoder,
        config: RetrievalConfig | None = None,
        index_config: IndexConfig | None = None,
    ) -> Retriever:
        """Open the live index under `index_root`, and the reranker `config.reranker` names.

        Raises:
            IndexLoadError: no build yet, or an index that fails its checks.
            ModelNotFoundError: the configured reranker is not available on this machine.
        """
        config = config or RetrievalConfig()
        reranker = load_reranker(config.reranker) if config.reranker else None
        index = open_index(index_root, index_config or IndexConfig())
        return cls(index, encoder, config, reranker)

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
        terms = None  # the questions' keyword terms, shared by the chunks' and documents' BM25
        if mode in ("hybrid", "keyword"):
            terms = terms_of(questions)
            keyword = self.index.keywords.search(questions, depth, terms)
        documents: list[dict[int, float]] = [{} for _ in questions]
        if mode == "hybrid" and self.config.document_stage:
            scale = self.config.document_scale
            documents = self.index.documents.match(questions, scale, terms)
        return [
            self._rank(question, d, kw, docs, k)
            for question, d, kw, docs in zip(questions, dense, keyword, documents)
        ]

    def _document_votes(
        self, candidates: list[int], document_shares: dict[int, float]
    ) -> dict[int, float]:
        """What the document stage adds to each candidate: its document's share of the best
        document score, times `document_weight` first-rank scores."""
        if not document_shares or not candidates:
            return {}
        first_rank = self.config.document_weight / (self.config.rrf_k + 1)
        documents = self.index.documents.documents_of(candidates)
        return {
            row: first_rank * document_shares[int(doc)]
            for row, doc in zip(candidates, documents)
            if int(doc) in document_shares
        }

    def _rank(
        self,
        question: str,
        dense: list[tuple[int, float]],
        keyword: list[tuple[int, float]],
        document_shares: dict[int, float],
        k: int,
    ) -> list[Hit]:
        dense_scores = dict(dense)
        keyword_scores = dict(keyword)
        depth = max(k, self.config.rerank_candidates) if self.reranker else k
        if self.config.mode == "hybrid":
            candidates = list(dict.fromkeys([r for r, _ in dense] + [r for r, _ in keyword]))
            fused = reciprocal_rank_fusion([dense, keyword], self.config.rrf_k, len(candidates))
            votes = self._document_votes(candidates, document_shares)
            scored = [(row, score + votes.get(row, 0.0)) for row, score in fused]
            ranked = sorted(scored, key=lambda item: -item[1])[:depth]
        else:
            ranked = (dense or keyword)[:depth]
        chunks = self.index.store.chunks_at([row for row, _ in ranked])
        hits = [
            Hit(
                source=chunk.source,
                page=chunk.page,
                section=chunk.section,
                chunk_id=chunk.chunk_id,
                score=round(score, 6),
                text=chunk.text,
                dense_score=dense_scores.get(row),
                keyword_score=keyword_scores.get(row),
                title=chunk.title,
                table_header=chunk.table_header,
            )
            for (row, score), chunk in zip(ranked, chunks)
        ]
        if self.reranker:
            hits = self._rerank(question, hits, chunks)
        return hits[:k]

    def _rerank(self, question: str, hits: list[Hit], chunks: list[Chunk]) -> list[Hit]:
        """The first `rerank_candidates` hits in the cross-encoder's order, then the rest."""
        head = self.config.rerank_candidates
        scores = self.reranker.score(question, [indexed_text(chunk) for chunk in chunks[:head]])
        rescored = [replace(hit, rerank_score=s) for hit, s in zip(hits, scores)]
        rescored.sort(key=lambda hit: -hit.rerank_score)
        return rescored + hits[head:]

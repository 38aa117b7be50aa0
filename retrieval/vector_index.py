"""FAISS index over normalized embeddings: inner product equals cosine similarity."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from retrieval.config import IndexConfig

RECALL_K = 10
RECALL_QUERIES = 200
# FAISS warns below 39 training points a list; more points a list train steadier centroids.
_TRAIN_PER_LIST = 64
# The 256 centroids of each product-quantizer codebook want as many points a centroid.
_PQ_TRAIN = 256 * 39


def choose_kind(config: IndexConfig, n_vectors: int) -> str:
    """Exact search while it is fast enough, then HNSW (no training, good recall, fast queries),
    then IVF-PQ once full vectors would not fit in memory comfortably."""
    if config.kind != "auto":
        return config.kind
    if n_vectors >= config.compressed_from:
        return "ivfpq"
    return "hnsw" if n_vectors >= config.approximate_from else "flat"


def pq_bytes(dim: int, wanted: int) -> int:
    """The largest divisor of `dim` not above `wanted`: FAISS splits a vector into that many
    equal sub-vectors, one byte of code each."""
    return max(m for m in range(1, min(dim, wanted) + 1) if dim % m == 0)


def ivfpq_lists(n_vectors: int) -> int:
    """Inverted lists for `n_vectors`: about sqrt(n), with enough training points for each."""
    return max(1, min(int(math.sqrt(n_vectors)), n_vectors // 39))


def train_rows(n_vectors: int, seed: int = 0) -> np.ndarray:
    """The sorted rows an IVF-PQ index of `n_vectors` is trained on: a seeded sample."""
    size = min(n_vectors, max(_TRAIN_PER_LIST * ivfpq_lists(n_vectors), _PQ_TRAIN))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_vectors, size=size, replace=False))


def build_compressed_index(
    sample: np.ndarray, shards: Iterable[np.ndarray], n_vectors: int, config: IndexConfig
):
    """An IVF-PQ index trained on `sample` and filled from `shards` in row order, so that no
    more than one shard of full vectors is in memory.

    Args:
        sample: (s, dim) float32 rows to train the coarse centroids and the codebooks on.
        shards: (rows, dim) float32 blocks, together every row in order.
        n_vectors: the rows the shards hold, which sizes the inverted lists.
        config: `ivfpq_bytes` and the search-time `ivf_nprobe`.
    """
    import faiss

    dim = sample.shape[1]
    m = pq_bytes(dim, config.ivfpq_bytes)
    lists = ivfpq_lists(n_vectors)
    quantizer = faiss.IndexFlatIP(dim)
    # 8 bits a sub-vector needs 256 training points; fewer, and the codebooks get fewer bits.
    bits = 8 if len(sample) >= 256 else max(1, int(math.log2(max(len(sample), 2))))
    index = faiss.IndexIVFPQ(quantizer, dim, lists, m, bits, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    for shard in shards:
        index.add(np.ascontiguousarray(shard, dtype=np.float32))
    configure_search(index, config)
    return index


def recall_at_k(
    index, queries: np.ndarray, query_rows: np.ndarray, shards: Iterable[np.ndarray], k: int
) -> float:
    """Mean share of each query's exact top-k (inner product over `shards`, in row order) that
    `index` returns in its top k; a query's own row (it is a stored vector) is left out of
    both lists."""
    exact_scores = np.full((len(queries), k + 1), -np.inf, dtype=np.float32)
    exact_rows = np.full((len(queries), k + 1), -1, dtype=np.int64)
    offset = 0
    for shard in shards:
        scores = queries @ np.asarray(shard, dtype=np.float32).T
        rows = np.broadcast_to(np.arange(offset, offset + len(shard)), scores.shape)
        merged_scores = np.concatenate([exact_scores, scores], axis=1)
        merged_rows = np.concatenate([exact_rows, rows], axis=1)
        keep = np.argsort(-merged_scores, axis=1, kind="stable")[:, : k + 1]
        exact_scores = np.take_along_axis(merged_scores, keep, axis=1)
        exact_rows = np.take_along_axis(merged_rows, keep, axis=1)
        offset += len(shard)
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k + 1)
    shares = []
    for own, truth, got in zip(query_rows, exact_rows, found):
        truth = [r for r in truth if r != own and r >= 0][:k]
        got = [r for r in got if r != own and r >= 0][:k]
        if truth:
            shares.append(len(set(truth) & set(got)) / len(truth))
    return float(np.mean(shares)) if shares else 1.0


def build_vector_index(embeddings: np.ndarray, config: IndexConfig):
    """Build a FAISS index whose row i is `embeddings[i]`.

    Args:
        embeddings: (n, dim) float32, unit-length rows.
        config: index settings; `kind` decides flat / hnsw / ivf.

    Returns:
        The FAISS index, with its search-time parameters set.
    """
    import faiss

    n, dim = embeddings.shape
    kind = choose_kind(config, n)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * config.hnsw_m)
    elif kind == "ivf":
        # sqrt(n) lists is the usual balance; FAISS wants ~39 training points per list.
        n_lists = max(1, min(int(4 * math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        if n:
            index.train(embeddings)
    elif kind == "ivfpq":
        return build_compressed_index(embeddings[train_rows(n)], [embeddings], n, config)
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    if n:
        index.add(embeddings)
    configure_search(index, config)
    return index


def configure_search(index, config: IndexConfig) -> None:
    """Apply search-time parameters, which FAISS does not always persist."""
    import faiss

    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = config.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = config.ivf_nprobe


def index_kind(index) -> str:
    import faiss

    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


def save_vector_index(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load_vector_index(path: Path, config: IndexConfig):
    import faiss

    index = faiss.read_index(str(path))
    configure_search(index, config)
    return index


def search_vectors(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows and cosine scores per query; rows are -1 where fewer than k exist."""
    k = max(1, min(k, index.ntotal))
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return rows, scores

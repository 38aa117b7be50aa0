"""FAISS index over normalized embeddings: inner product equals cosine similarity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from retrieval.config import IndexConfig


def choose_kind(config: IndexConfig, n_vectors: int) -> str:
    """Exact search while it is fast enough, then HNSW (no training, good recall, fast queries)."""
    if config.kind != "auto":
        return config.kind
    return "hnsw" if n_vectors >= config.approximate_from else "flat"


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

"""Scale benchmark: build throughput of the local and the Ray engine, IVF-PQ at 1M vectors, and
a projection for 10M chunks from the measured rates. Prints tables.

1. Build throughput: `build()` end to end (scan, parse, chunk, embed with the embedded
   all-MiniLM-L6-v2, store, index, commit; model loads included) on PubMedQA abstracts, in
   chunks/s: the local engine, then the Ray engine with 1 and with 2 embedding workers, each
   on a local Ray of that many CPUs, whose start is timed on its own. Every process computes
   on one thread (OMP_NUM_THREADS=1), so N workers use N cores.
2. IVF-PQ at 1M vectors (`--vectors`): the real vectors are the chunk embeddings of part 1 plus
   embeddings of distinct PubMedQA sentences (`--sentences`); the rest are drawn from a
   Gaussian with the real vectors' mean and covariance and normalized, as the encoder's outputs
   are (`bench/ingest.py`'s generator; embedding a million texts would take days here). The
   index is what the build writes past `index.compressed_from`: `train_rows` picks the seeded
   training sample, `build_compressed_index` fills it 100k vectors at a time. Queries: PubMedQA
   questions, embedded; recall@10 against exact search over the same vectors; per-query
   latency (k = 50, the fusion candidates) at nprobe 16 (the default) and 64; memory: the
   serialized index's bytes.
3. Projection for 10M chunks, from the figures above: embedding hours for W workers at the
   measured per-worker Ray rate times the 1 → 2 worker scaling efficiency (assumed to hold for
   W workers), and beside them at linear scaling (efficiency 1: workers on cores of their
   own); index bytes per vector as measured (plus the larger coarse quantizer); query
   latency scaled by sqrt(10) (nprobe lists of n / sqrt(n) vectors each, and sqrt(n) lists
   to rank).

--smoke: 10 abstracts, 100 sentences, 20k vectors, 10 queries: every part runs, in about a
minute; its figures only show that the script works.

Usage:
    python bench/scale.py --data ../shared/data/pubmedqa [--docs 300] [--sentences 4000]
                          [--vectors 1000000] [--queries 200] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# One thread per process, set before torch loads: N Ray workers then use N cores, and the
# local engine one, as the comparison needs; Ray's workers inherit it.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

from ingest import (
    gaussian_like,
    percentile,
    print_table,
    sentences,
    timed_search,
    write_pubmedqa_docs,
)
from machine import OtherLoad

from builder.build import build
from builder.project import open_project
from retrieval.config import IndexConfig, RetrievalConfig
from retrieval.embeddings import encode_in_length_order, load_encoder
from retrieval.index import SHARD_ROWS, open_index
from retrieval.models import EMBEDDED_EMBEDDING
from retrieval.vector_index import build_compressed_index, build_vector_index, train_rows

TARGET_CHUNKS = 10_000_000
RECALL_AT = 10
PROJECTED_WORKERS = (2, 16, 64)
NPROBES = (16, 64)
"""Inverted lists searched: the production `index.ivf_nprobe` (16) and 4x more."""


def bench_engine(docs: Path, work: Path, engine: str, workers: int) -> dict:
    """One fresh build of `docs` with `engine`; chunks/s of the build. For Ray, a local Ray of
    `workers` CPUs is started first and timed apart: a constant that 10M chunks amortize (the
    actors' model loads stay inside the build)."""
    project = open_project(work / f"{engine}-{workers}", ["embedding.device=cpu"], docs=docs)
    ray_start = None
    if engine == "ray":
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
    try:
        started = time.perf_counter()
        report = build(project, engine=engine, workers=workers)
        seconds = time.perf_counter() - started
    finally:
        if engine == "ray":
            ray.shutdown()
    return {
        "chunks": report.total_chunks,
        "files": report.total_files,
        "seconds": seconds,
        "cps": report.total_chunks / seconds,
        "ray_start": ray_start,
        "root": project.index_root,
    }


def fitted_gaussian(real: np.ndarray, n: int) -> np.ndarray:
    """`n` draws of `bench/ingest.py`'s generator, 100k at a time to bound the memory."""
    parts = [
        gaussian_like(real, min(SHARD_ROWS, n - start), seed=start // SHARD_ROWS)
        for start in range(0, n, SHARD_ROWS)
    ]
    return np.vstack(parts) if parts else np.zeros((0, real.shape[1]), dtype=np.float32)


def real_vectors(root: Path, data: Path, limit: int) -> tuple[np.ndarray, int]:
    """The build's chunk embeddings plus embeddings of `limit` distinct PubMedQA sentences."""
    index = open_index(root, IndexConfig())
    chunk_vectors = np.array(index.store.embeddings(index.manifest.dim))
    index.close()
    records = json.loads((data / "ori_pqal.json").read_text(encoding="utf-8"))
    seen: set[str] = set()
    pool = [
        s
        for record in records.values()
        for text in [*record["CONTEXTS"], record.get("LONG_ANSWER", "")]
        for s in sentences(text)
        if not (s in seen or seen.add(s))
    ][:limit]
    print(f"embedding {len(pool)} distinct sentences …", file=sys.stderr)
    encoder = load_encoder(EMBEDDED_EMBEDDING, device="cpu")
    return np.vstack([chunk_vectors, encode_in_length_order(encoder, pool)]), len(pool)


def shards_of(vectors: np.ndarray):
    for start in range(0, len(vectors), SHARD_ROWS):
        yield vectors[start : start + SHARD_ROWS]


def bench_ivfpq(vectors: np.ndarray, queries: np.ndarray) -> dict:
    """Build the IVF-PQ index the build writes past `index.compressed_from`; its recall@10
    against exact search, per-query latency and size."""
    import faiss

    config = IndexConfig(kind="ivfpq")
    n = len(vectors)
    started = time.perf_counter()
    index = build_compressed_index(vectors[train_rows(n)], shards_of(vectors), n, config)
    build_s = time.perf_counter() - started
    k = RetrievalConfig().candidates
    flat = build_vector_index(vectors, IndexConfig(kind="flat"))
    exact, flat_ms = timed_search(flat, queries, k)
    del flat
    probes = {}
    for nprobe in NPROBES:
        index.nprobe = nprobe
        found, ms = timed_search(index, queries, k)
        shares = [
            len(set(f[:RECALL_AT]) & set(e[:RECALL_AT])) / RECALL_AT for f, e in zip(found, exact)
        ]
        probes[nprobe] = (float(np.mean(shares)), percentile(ms, 0.5), percentile(ms, 0.95))
    recall, p50, p95 = probes[config.ivf_nprobe]
    return {
        "n": n,
        "lists": index.nlist,
        "bytes_per_code": index.pq.M * index.pq.nbits // 8,
        "index_bytes": len(faiss.serialize_index(index)),
        "flat_bytes": vectors.nbytes,
        "build_s": build_s,
        "recall": recall,
        "p50": p50,
        "p95": p95,
        "probes": probes,
        "flat_p50": percentile(flat_ms, 0.5),
        "dim": vectors.shape[1],
    }


def projection(engines: dict[str, dict], ivfpq: dict) -> list[tuple[str, ...]]:
    """Rows for 10M chunks, computed from the measured rates (see the module docstring)."""
    one, two = engines["ray, 1 worker"]["cps"], engines["ray, 2 workers"]["cps"]
    efficiency = two / (2 * one)
    lists = math.isqrt(TARGET_CHUNKS)
    quantizer = lists * ivfpq["dim"] * 4
    per_vector = (ivfpq["index_bytes"] - ivfpq["lists"] * ivfpq["dim"] * 4) / ivfpq["n"]
    index_gb = (per_vector * TARGET_CHUNKS + quantizer) / 1e9
    scale = math.sqrt(TARGET_CHUNKS / ivfpq["n"])
    rows = []
    for workers in PROJECTED_WORKERS:
        rate = one * workers * efficiency
        rows.append(
            (
                f"{workers}",
                f"{rate:,.0f}",
                f"{TARGET_CHUNKS / rate / 3600:,.1f}",
                f"{TARGET_CHUNKS / (one * workers) / 3600:,.1f}",
                f"{index_gb:.2f} (flat: {TARGET_CHUNKS * ivfpq['dim'] * 4 / 1e9:.1f})",
                f"{ivfpq['p50'] * scale:.1f} / {ivfpq['p95'] * scale:.1f}",
            )
        )
    return rows, efficiency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/pubmedqa"))
    parser.add_argument("--docs", type=int, default=300, help="abstracts to build from")
    parser.add_argument("--sentences", type=int, default=4000, help="real sentence vectors")
    parser.add_argument("--vectors", type=int, default=1_000_000, help="vectors for IVF-PQ")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, about a minute: checks the script"
    )
    args = parser.parse_args()
    if not (args.data / "ori_pqal.json").is_file():
        sys.exit(f"error: {args.data}/ori_pqal.json not found; pass --data DIR (see its README)")
    if args.smoke:
        args.docs, args.sentences, args.vectors, args.queries = 10, 100, 20_000, 10
    machine = OtherLoad()

    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        docs = work / "docs"
        docs.mkdir()
        write_pubmedqa_docs(args.data, docs, args.docs)
        engines = {}
        for label, engine, workers in (
            ("local", "local", 1),
            ("ray, 1 worker", "ray", 1),
            ("ray, 2 workers", "ray", 2),
        ):
            print(f"building {args.docs} abstracts: {label} …", file=sys.stderr)
            engines[label] = bench_engine(docs, work, engine, workers)
        real, n_sentences = real_vectors(engines["local"]["root"], args.data, args.sentences)
        synthetic = max(0, args.vectors - len(real))
        vectors = np.ascontiguousarray(
            np.vstack([real[: args.vectors], fitted_gaussian(real, synthetic)]),
            dtype=np.float32,
        )
        encoder = load_encoder(EMBEDDED_EMBEDDING, device="cpu")
        records = json.loads((args.data / "ori_pqal.json").read_text(encoding="utf-8"))
        queries = encoder.encode([r["QUESTION"] for r in records.values()][: args.queries])
        print(f"IVF-PQ over {len(vectors)} vectors …", file=sys.stderr)
        ivfpq = bench_ivfpq(vectors, queries)
        del vectors

    local = engines["local"]
    print(f"\nbuild throughput: {args.docs} PubMedQA abstracts, {local['chunks']} chunks")
    print_table(
        ("engine", "chunks/s", "build s", "Ray start s", "chunks"),
        [
            (
                label,
                f"{e['cps']:.1f}",
                f"{e['seconds']:.1f}",
                "-" if e["ray_start"] is None else f"{e['ray_start']:.1f}",
                str(e["chunks"]),
            )
            for label, e in engines.items()
        ],
    )
    print(
        f"\nIVF-PQ at {ivfpq['n']:,} vectors: {len(real[: args.vectors]):,} real "
        f"({local['chunks']} chunks + {n_sentences} sentences), {synthetic:,} drawn from their "
        f"fitted Gaussian; {len(queries)} PubMedQA questions as queries"
    )
    print_table(
        ("measure", "value"),
        [
            ("lists / code bytes a vector", f"{ivfpq['lists']} / {ivfpq['bytes_per_code']}"),
            ("recall@10 against exact search", f"{ivfpq['recall']:.3f}"),
            *(
                (
                    f"nprobe {nprobe}: recall@10, p50 / p95 ms",
                    f"{recall:.3f}, {p50:.2f} / {p95:.2f}",
                )
                for nprobe, (recall, p50, p95) in ivfpq["probes"].items()
            ),
            (
                "index memory, MB (flat vectors)",
                f"{ivfpq['index_bytes'] / 1e6:.0f} ({ivfpq['flat_bytes'] / 1e6:.0f})",
            ),
            ("search p50 / p95 ms (k 50, nprobe 16)", f"{ivfpq['p50']:.2f} / {ivfpq['p95']:.2f}"),
            ("exact search p50 ms", f"{ivfpq['flat_p50']:.2f}"),
            ("train + fill, s", f"{ivfpq['build_s']:.1f}"),
        ],
    )
    rows, efficiency = projection(engines, ivfpq)
    print(
        f"\nprojection for {TARGET_CHUNKS:,} chunks (Ray per-worker rate "
        f"{engines['ray, 1 worker']['cps']:.1f} chunks/s, 1 → 2 worker efficiency "
        f"{efficiency:.2f}, assumed to hold)"
    )
    print_table(
        (
            "workers",
            "chunks/s",
            "embed hours",
            "if linear",
            "IVF-PQ index GB",
            "query p50 / p95 ms",
        ),
        rows,
    )
    print()
    print_table(("machine", "value", "note"), [machine.row()])


if __name__ == "__main__":
    main()

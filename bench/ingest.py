"""Ingest and retrieval benchmark: prints a table.

1. Build throughput: `ragtune build` end to end (scan, load, chunk, embed, index, commit; the
   model load included) in chunks/s, divided by a bare `SentenceTransformer.encode` of the very
   same chunk texts with the model already loaded. Goal: >= 0.9.
2. Search at N chunks (default 100k), on vectors that are not copies of each other:
   - real vectors first: the build's own chunk embeddings, plus an embedding of every distinct
     sentence (5 words or more) of the PubMedQA contexts and conclusions, the SEC 10-Q filings
     (--sec) and the sample corpus, each text indexed with its own vector;
   - the rest, when N is larger than that (it is at 100k: about 24k real texts exist here, and
     embedding 100k texts would take hours on two cores), synthetic: drawn from a Gaussian with
     the real vectors' mean and covariance (so the same eigenvalue spectrum), then normalized to
     unit length as the encoder's outputs are; their texts, for BM25, are four real sentences
     regrouped at random. The table gives the real / synthetic counts and the median cosine of
     a vector's nearest other vector for each kind, which shows they are not near-duplicates.
   Recall@10 of the production HNSW index (M 32, efSearch 128: what `index.kind = auto` picks
   from 50k chunks) and of IVF (`index.kind = ivf`, nprobe 16) against exact flat search over the
   same vectors, for the PubMedQA questions as queries and for fresh draws of the Gaussian;
   beside each, its dense search latency per query (k = the 50 fusion candidates). Then p50/p95
   of hybrid search (dense + BM25 + fusion + chunk fetch) through `Retriever` on that HNSW index,
   with the query embedding excluded and timed separately. Goal: hybrid p50 <= 10 ms.

--smoke: 10 abstracts, one SEC filing, 50 sentences of each corpus, 3000 chunks, 10 queries, no
cold-import timing: every part runs in seconds; its figures only show that the script works.

Usage:
    python bench/ingest.py --data ../shared/data/pubmedqa [--sec ../shared/data/sec10q]
                           [--docs 1000] [--chunks 100000] [--queries 200] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from machine import OtherLoad
from smoke import single_threaded

from builder.build import build
from builder.project import open_project
from builder.sample_corpus import write_sample_corpus
from retrieval.chunking import indexed_text
from retrieval.config import IndexConfig, RetrievalConfig
from retrieval.documents import Chunk, LoadError
from retrieval.embeddings import encode_in_length_order, load_encoder
from retrieval.index import CHUNKS_FILE, IndexLayout, Manifest, open_index, write_search_indexes
from retrieval.loaders import load_document
from retrieval.models import EMBEDDED_EMBEDDING, resolve_embedding_model
from retrieval.search import Retriever
from retrieval.store import ChunkStore, FileRecord
from retrieval.vector_index import build_vector_index, search_vectors

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
MIN_WORDS = 5
RECALL_AT = 10
PER_FILE = 100  # chunks per synthetic source file in the big index


def write_pubmedqa_docs(data: Path, folder: Path, limit: int) -> list[str]:
    """One document per abstract, alternating .md and .txt; returns the questions."""
    records = json.loads((data / "ori_pqal.json").read_text(encoding="utf-8"))
    questions = []
    for number, (pmid, record) in enumerate(list(records.items())[:limit]):
        paragraphs = "\n\n".join(record["CONTEXTS"])
        if number % 2:
            (folder / f"{pmid}.txt").write_text(paragraphs, encoding="utf-8")
        else:
            (folder / f"{pmid}.md").write_text(f"# {record['QUESTION']}\n\n{paragraphs}\n")
        questions.append(record["QUESTION"])
    return questions


def cold_import_seconds() -> float:
    """What a fresh `ragtune build` process pays before it reads a file: importing torch,
    transformers and sentence-transformers. Timed in a child process, shown on its own line."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sentence_transformers, faiss, bm25s"], check=True)
    return time.perf_counter() - started


def bench_build(docs: Path, work: Path) -> tuple[list[str], np.ndarray, dict]:
    """Build `docs`, then encode the same chunk texts bare; returns the chunks' texts and their
    embeddings as the build stored them."""
    # A long-lived process (the app, the server) has these imported already; the build below
    # still loads the tokenizer and the weights from disk inside the timed region.
    import faiss  # noqa: F401
    import sentence_transformers  # noqa: F401

    project = open_project(work / "project", ["embedding.device=cpu"], docs=docs)
    project.save_config()
    started = time.perf_counter()
    report = build(project)  # loads its own encoder: tokenizer + weights, as the CLI does
    build_seconds = time.perf_counter() - started

    index = open_index(project.index_root, IndexConfig())
    chunks = list(index.store.iter_chunks())
    stored = np.array(index.store.embeddings(index.manifest.dim))
    index.close()
    texts = [indexed_text(chunk) for chunk in chunks]
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_embedding_model(EMBEDDED_EMBEDDING), device="cpu")
    model.encode(texts[:32], batch_size=32)  # warm-up, as the build's first batch pays it too
    started = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    encode_seconds = time.perf_counter() - started
    return (
        [chunk.text for chunk in chunks],
        stored,
        {
            "files": report.total_files,
            "chunks": report.total_chunks,
            "build_s": build_seconds,
            "encode_s": encode_seconds,
            "build_cps": report.total_chunks / build_seconds,
            "encode_cps": len(texts) / encode_seconds,
        },
    )


# --- distinct real texts and the synthetic rest ----------------------------------------------


def sentences(text: str) -> list[str]:
    parts = (" ".join(part.split()) for part in SENTENCE_END.split(text))
    return [part for part in parts if len(part.split()) >= MIN_WORDS]


def document_sentences(paths: list[Path]) -> list[str]:
    """The sentences of documents, read by ragtune's own loaders."""
    found = []
    for path in paths:
        try:
            document = load_document(path, path.name, 200 * 2**20)
        except LoadError as error:
            print(f"  skipped {path.name}: {error}", file=sys.stderr)
            continue
        for block in document.blocks:
            found += sentences(block.text)
    return found


def distinct_sentences(data: Path, sec: Path | None, work: Path, sec_files: int | None) -> dict:
    """Every distinct sentence of the three corpora, by corpus (the first corpus keeps a
    sentence that two share). PubMedQA questions are left out: they are the queries."""
    records = json.loads((data / "ori_pqal.json").read_text(encoding="utf-8"))
    corpora = {
        "PubMedQA": [
            s
            for record in records.values()
            for text in [*record["CONTEXTS"], record.get("LONG_ANSWER", "")]
            for s in sentences(text)
        ]
    }
    if sec is not None:
        pdfs = sorted((sec / "docs").glob("*.pdf"))[:sec_files]
        corpora["SEC 10-Q"] = document_sentences(pdfs)
    sample = work / "sample"
    corpora["sample corpus"] = document_sentences(write_sample_corpus(sample))
    seen: set[str] = set()
    unique = {}
    for name, found in corpora.items():
        unique[name] = [s for s in found if not (s in seen or seen.add(s))]
    return unique


def gaussian_like(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` unit vectors drawn from the Gaussian with `real`'s mean and covariance."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(real, rowvar=False))
    scale = vectors * np.sqrt(np.clip(values, 0, None))  # (dim, dim): Σ = scale @ scale.T
    draws = rng.standard_normal((n, real.shape[1])) @ scale.T + mean
    draws /= np.linalg.norm(draws, axis=1, keepdims=True)
    return draws.astype(np.float32)


def big_collection(
    real_texts: list[str], real: np.ndarray, n: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`n` (text, vector) pairs: the real ones first (all, or the first n), then synthetic ones.

    Returns:
        texts, vectors (unit rows) and a boolean mask of the real rows.
    """
    keep = min(n, len(real_texts))
    texts, vectors = list(real_texts[:keep]), real[:keep]
    synthetic = n - keep
    if synthetic:
        pool = [s for text in real_texts for s in sentences(text)] or real_texts
        picker = random.Random(0)
        texts += [" ".join(picker.sample(pool, 4)) for _ in range(synthetic)]
        vectors = np.vstack([vectors, gaussian_like(real, synthetic, seed=0)])
    is_real = np.arange(n) < keep
    return texts, np.ascontiguousarray(vectors, dtype=np.float32), is_real


def write_big_index(texts: list[str], vectors: np.ndarray, root: Path) -> float:
    """Write an n-chunk generation through the production writers (store, FAISS, BM25), with
    the production HNSW settings; return the seconds the FAISS and BM25 indexes took."""
    layout = IndexLayout(root)
    number, partial = layout.start_generation()
    dim = vectors.shape[1]
    files = (len(texts) + PER_FILE - 1) // PER_FILE
    with ChunkStore(partial / CHUNKS_FILE) as store:
        for file_number in range(files):
            source = f"big/{file_number:05d}.txt"
            rows = range(file_number * PER_FILE, min(len(texts), (file_number + 1) * PER_FILE))
            chunks = [
                Chunk(f"{row}", source, texts[row], 0, len(texts[row]), None, None, position)
                for position, row in enumerate(rows)
            ]
            store.replace_file(
                FileRecord(source, "0", 0, len(chunks)), chunks, vectors[rows.start : rows.stop]
            )
        total = store.renumber()
        started = time.perf_counter()
        # What `kind = auto` picks from 50k chunks, named so that a smaller --chunks is HNSW too.
        kind = write_search_indexes(store, partial, dim, IndexConfig(kind="hnsw"), True).kind
        seconds = time.perf_counter() - started
    manifest = Manifest(number, EMBEDDED_EMBEDDING, dim, kind, "bench", files, total)
    layout.commit(partial, manifest)
    return seconds


# --- recall and latency ----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """Top-k rows of each query, one query at a time as a server sees them, and the ms each."""
    rows, ms = [], []
    search_vectors(index, queries[:3], k)  # warm-up
    for query in queries:
        started = time.perf_counter()
        found, _ = search_vectors(index, query[None, :], k)
        ms.append((time.perf_counter() - started) * 1000)
        rows.append(found[0])
    return np.asarray(rows), ms


def recall(found: np.ndarray, exact: np.ndarray, k: int = RECALL_AT) -> float:
    """Mean share of the exact top-k that the approximate top-k holds."""
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, exact)]))


def nearest_other_cosine(index, vectors: np.ndarray, rows: np.ndarray) -> float:
    """Median cosine of each sampled vector's nearest neighbour other than itself (exact)."""
    if not len(rows):
        return float("nan")
    scores, found = index.search(vectors[rows], 2)
    best = [s[1] if f[0] == row else s[0] for s, f, row in zip(scores, found, rows)]
    return float(np.median(best))


def bench_indexes(root: Path, vectors: np.ndarray, query_sets: dict[str, np.ndarray]) -> dict:
    """Recall@10 against exact search and per-query latency of flat, HNSW and IVF."""
    k = RetrievalConfig().candidates
    production = open_index(root, IndexConfig())
    started = time.perf_counter()
    indexes = {"flat (exact)": build_vector_index(vectors, IndexConfig(kind="flat"))}
    build_s = {"flat (exact)": time.perf_counter() - started}
    indexes["hnsw (production)"] = production.vectors
    started = time.perf_counter()
    indexes["ivf"] = build_vector_index(vectors, IndexConfig(kind="ivf"))
    build_s["ivf"] = time.perf_counter() - started
    results: dict[str, dict] = {name: {"recall": {}, "ms": []} for name in indexes}
    for set_name, queries in query_sets.items():
        exact, _ = timed_search(indexes["flat (exact)"], queries, k)
        for name, index in indexes.items():
            found, ms = timed_search(index, queries, k)
            results[name]["recall"][set_name] = recall(found, exact)
            results[name]["ms"] += ms
    for name, result in results.items():
        result["build_s"] = build_s.get(name)
    results["ivf"]["lists"] = indexes["ivf"].nlist
    production.close()
    return results


def bench_latency(root: Path, questions: list[str], mode: str) -> dict:
    encoder = load_encoder(EMBEDDED_EMBEDDING, device="cpu")
    retriever = Retriever.open(root, encoder, RetrievalConfig(mode=mode), IndexConfig())
    embed_ms, search_ms = [], []
    for question in questions[:3]:  # warm-up
        retriever.search(question)
    for question in questions:
        started = time.perf_counter()
        vector = encoder.encode([question])
        embed_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        retriever.search_many([question], query_vectors=vector)
        search_ms.append((time.perf_counter() - started) * 1000)
    retriever.close()
    return {
        "p50": statistics.median(search_ms),
        "p95": percentile(search_ms, 0.95),
        "embed_p50": statistics.median(embed_ms),
    }


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    print("  ".join(f"{cell:<{w}}" for cell, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/pubmedqa"))
    parser.add_argument(
        "--sec", type=Path, default=Path("../shared/data/sec10q"), help="SEC 10-Q folder"
    )
    parser.add_argument("--docs", type=int, default=1000, help="abstracts to build from")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks for the search test")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: checks the script"
    )
    args = parser.parse_args()
    if not (args.data / "ori_pqal.json").is_file():
        sys.exit(f"error: {args.data}/ori_pqal.json not found; pass --data DIR (see its README)")
    sec = args.sec if (args.sec / "docs").is_dir() else None
    if sec is None:
        print(f"note: {args.sec}/docs not found; the SEC filings are left out", file=sys.stderr)
    sentence_limit, sec_files = None, None
    if args.smoke:
        single_threaded()
        args.docs, args.chunks, args.queries = 10, 3000, 10
        sentence_limit, sec_files = 150, 1
    machine = OtherLoad()

    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        docs = work / "docs"
        docs.mkdir()
        write_pubmedqa_docs(args.data, docs, args.docs)
        imports = None if args.smoke else cold_import_seconds()
        print(f"building {args.docs} PubMedQA abstracts …", file=sys.stderr)
        chunk_texts, chunk_vectors, built = bench_build(docs, work)

        by_corpus = distinct_sentences(args.data, sec, work, sec_files)
        if sentence_limit:  # --smoke: a few of each corpus
            share = sentence_limit // len(by_corpus)
            by_corpus = {name: found[:share] for name, found in by_corpus.items()}
        pool = [s for found in by_corpus.values() for s in found]
        encoder = load_encoder(EMBEDDED_EMBEDDING, device="cpu")
        print(f"embedding {len(pool)} distinct sentences …", file=sys.stderr)
        started = time.perf_counter()
        sentence_vectors = encode_in_length_order(encoder, pool)
        embed_s = time.perf_counter() - started
        real_texts = chunk_texts + pool
        real = np.vstack([chunk_vectors, sentence_vectors])
        texts, vectors, is_real = big_collection(real_texts, real, args.chunks)
        print(f"writing a {args.chunks}-chunk index …", file=sys.stderr)
        write_s = write_big_index(texts, vectors, work / "big")

        records = json.loads((args.data / "ori_pqal.json").read_text(encoding="utf-8"))
        queries = [r["QUESTION"] for r in records.values()][: args.queries]
        query_sets = {"PubMedQA questions": encoder.encode(queries)}
        if not is_real.all():
            query_sets["Gaussian draws"] = gaussian_like(real, args.queries, seed=1)
        print("recall and latency of flat, HNSW and IVF …", file=sys.stderr)
        indexes = bench_indexes(work / "big", vectors, query_sets)
        sample = np.random.default_rng(2)
        flat = build_vector_index(vectors, IndexConfig(kind="flat"))
        nearest = {
            kind: nearest_other_cosine(
                flat, vectors, sample.permutation(np.flatnonzero(mask))[: args.queries]
            )
            for kind, mask in (("real", is_real), ("synthetic", ~is_real))
        }
        del flat
        latency = {
            mode: bench_latency(work / "big", queries, mode)
            for mode in ("hybrid", "dense", "keyword")
        }

    ratio = built["build_cps"] / built["encode_cps"]
    n_real, n_synthetic = int(is_real.sum()), int((~is_real).sum())
    sources = ", ".join(f"{name} {len(found)}" for name, found in by_corpus.items())
    print(f"\nbuild: {args.docs} PubMedQA abstracts")
    print_table(
        ("measure", "value", "note"),
        [
            ("files / chunks", f"{built['files']} / {built['chunks']}", ""),
            (
                "build end to end, chunks/s",
                f"{built['build_cps']:.1f}",
                f"{built['build_s']:.1f} s",
            ),
            ("bare encode, chunks/s", f"{built['encode_cps']:.1f}", f"{built['encode_s']:.1f} s"),
            (
                "build ÷ bare encode",
                f"{ratio:.2f}",
                "goal ≥ 0.90 " + ("✓" if ratio >= 0.9 else "✗"),
            ),
            (
                "cold import of the libraries (once per process), s",
                "skipped" if imports is None else f"{imports:.1f}",
                "",
            ),
        ],
    )
    print(
        f"\nsearch at {args.chunks} chunks: {n_real} real texts with their own embeddings "
        f"({built['chunks']} build chunks + {len(pool)} distinct sentences: {sources}; "
        f"embedded in {embed_s:.0f} s), {n_synthetic} synthetic (Gaussian with the real "
        f"vectors' mean and covariance); FAISS + BM25 written in {write_s:.0f} s"
    )
    print(
        "nearest other vector, median cosine: "
        + ", ".join(f"{kind} {value:.3f}" for kind, value in nearest.items() if not np.isnan(value))
    )
    set_names = list(query_sets)
    rows = []
    for name, result in indexes.items():
        note = ""
        if name.startswith("hnsw"):
            note = "M 32, efSearch 128"
        elif name == "ivf":
            note = f"{result['lists']} lists, nprobe 16, trained in {result['build_s']:.1f} s"
        ms = result["ms"]
        rows.append(
            (
                name,
                *(f"{result['recall'][s]:.3f}" for s in set_names),
                f"{statistics.median(ms):.2f} / {percentile(ms, 0.95):.2f}",
                note,
            )
        )
    print_table(
        ("vector index", *(f"recall@10, {s}" for s in set_names), "dense p50 / p95 ms", "note"),
        rows,
    )
    print()
    rows = []
    for mode, figures in latency.items():
        goal = ""
        if mode == "hybrid":
            goal = "goal p50 ≤ 10 ms " + ("✓" if figures["p50"] <= 10 else "✗")
        rows.append(
            (
                f"{mode} search (Retriever, HNSW index), p50 / p95 ms",
                f"{figures['p50']:.2f} / {figures['p95']:.2f}",
                goal,
            )
        )
    rows.append(
        ("query embedding (excluded above), p50 ms", f"{latency['hybrid']['embed_p50']:.1f}", "")
    )
    rows.append(machine.row())
    print_table(("measure", "value", "note"), rows)


if __name__ == "__main__":
    main()

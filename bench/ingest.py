"""Ingest and retrieval benchmark: prints a table.

1. Build throughput: `ragtune build` end to end (scan, load, chunk, embed, index, commit; the
   model load included) in chunks/s, divided by a bare `SentenceTransformer.encode` of the very
   same chunk texts with the model already loaded. Goal: >= 0.9.
2. Retrieval latency at N chunks (default 100k): p50/p95 of hybrid search (dense + BM25 + fusion
   + chunk fetch) with the query embedding excluded and timed separately. Goal: p50 <= 10 ms.
   The 100k chunks are real PubMedQA sentences regrouped into passages; their vectors are real
   embeddings of the corpus's chunks plus noise, since embedding 100k texts takes an hour here.

Usage:
    python bench/ingest.py --data ../shared/data/pubmedqa [--docs 1000] [--chunks 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from builder.build import build
from builder.project import open_project
from retrieval.chunking import indexed_text
from retrieval.config import IndexConfig, RetrievalConfig
from retrieval.documents import Chunk
from retrieval.embeddings import load_encoder
from retrieval.index import CHUNKS_FILE, IndexLayout, Manifest, open_index, write_search_indexes
from retrieval.models import EMBEDDED_EMBEDDING, resolve_embedding_model
from retrieval.search import Retriever
from retrieval.store import ChunkStore, FileRecord


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


def bench_build(docs: Path, work: Path) -> tuple[list[str], dict]:
    # A long-lived process (the app, the server) has these imported already; the build below
    # still loads the tokenizer and the weights from disk inside the timed region.
    import faiss  # noqa: F401
    import sentence_transformers  # noqa: F401

    project = open_project(work / "project", docs=docs)
    project.save_config()
    started = time.perf_counter()
    report = build(project)  # loads its own encoder: tokenizer + weights, as the CLI does
    build_seconds = time.perf_counter() - started

    index = open_index(project.index_root, IndexConfig())
    texts = [indexed_text(chunk) for chunk in index.store.iter_chunks()]
    index.close()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_embedding_model(EMBEDDED_EMBEDDING), device="cpu")
    model.encode(texts[:32], batch_size=32)  # warm-up, as the build's first batch pays it too
    started = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    encode_seconds = time.perf_counter() - started
    return texts, {
        "files": report.total_files,
        "chunks": report.total_chunks,
        "build_s": build_seconds,
        "encode_s": encode_seconds,
        "build_cps": report.total_chunks / build_seconds,
        "encode_cps": len(texts) / encode_seconds,
    }


def synthetic_index(texts: list[str], vectors: np.ndarray, n: int, root: Path) -> None:
    """Write an n-chunk generation through the production writers (store, FAISS, BM25)."""
    rng = np.random.default_rng(0)
    sentences = [s.strip() for text in texts for s in text.split(". ") if len(s.split()) > 4]
    random.seed(0)
    layout = IndexLayout(root)
    number, partial = layout.start_generation()
    dim = vectors.shape[1]
    with ChunkStore(partial / CHUNKS_FILE) as store:
        per_file = 100
        for file_number in range(n // per_file):
            source = f"synthetic/{file_number:05d}.txt"
            chunks, rows = [], []
            for position in range(per_file):
                text = ". ".join(random.sample(sentences, 4))
                chunks.append(
                    Chunk(
                        f"{file_number}-{position}",
                        source,
                        text,
                        0,
                        len(text),
                        None,
                        None,
                        position,
                    )
                )
                base = vectors[rng.integers(len(vectors))]
                rows.append(base + rng.normal(0, 0.35 / np.sqrt(dim), dim))
            block = np.asarray(rows, dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            store.replace_file(FileRecord(source, "0", 0, per_file), chunks, block)
        total = store.renumber()
        started = time.perf_counter()
        kind = write_search_indexes(store, partial, dim, IndexConfig())
        print(
            f"  {kind} index over {total} vectors and BM25 written in "
            f"{time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
    manifest = Manifest(number, EMBEDDED_EMBEDDING, dim, kind, "bench", n // per_file, total)
    layout.commit(partial, manifest)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/pubmedqa"))
    parser.add_argument("--docs", type=int, default=1000, help="abstracts to build from")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks for the latency test")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    if not (args.data / "ori_pqal.json").is_file():
        sys.exit(f"error: {args.data}/ori_pqal.json not found; pass --data DIR (see its README)")

    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        docs = work / "docs"
        docs.mkdir()
        write_pubmedqa_docs(args.data, docs, args.docs)
        imports = cold_import_seconds()
        print(f"building {args.docs} PubMedQA abstracts …", file=sys.stderr)
        texts, built = bench_build(docs, work)

        print(f"writing a {args.chunks}-chunk index …", file=sys.stderr)
        encoder = load_encoder(EMBEDDED_EMBEDDING, device="cpu")
        sample = random.Random(1).sample(texts, min(len(texts), 400))
        synthetic_index(texts, encoder.encode(sample), args.chunks, work / "big")
        all_questions = json.loads((args.data / "ori_pqal.json").read_text(encoding="utf-8"))
        queries = [r["QUESTION"] for r in all_questions.values()][: args.queries]
        latency = {
            mode: bench_latency(work / "big", queries, mode)
            for mode in ("hybrid", "dense", "keyword")
        }

    ratio = built["build_cps"] / built["encode_cps"]
    rows = [
        ("build: files / chunks", f"{built['files']} / {built['chunks']}", ""),
        ("build end to end, chunks/s", f"{built['build_cps']:.1f}", f"{built['build_s']:.1f} s"),
        ("bare encode, chunks/s", f"{built['encode_cps']:.1f}", f"{built['encode_s']:.1f} s"),
        ("build ÷ bare encode", f"{ratio:.2f}", "goal ≥ 0.90 " + ("✓" if ratio >= 0.9 else "✗")),
    ]
    for mode, figures in latency.items():
        goal = (
            "goal p50 ≤ 10 ms " + ("✓" if figures["p50"] <= 10 else "✗") if mode == "hybrid" else ""
        )
        rows.append(
            (
                f"{mode} search @ {args.chunks} chunks, p50 / p95 ms",
                f"{figures['p50']:.2f} / {figures['p95']:.2f}",
                goal,
            )
        )
    rows.append(("cold import of the libraries (once per process), s", f"{imports:.1f}", ""))
    rows.append(
        ("query embedding (excluded above), p50 ms", f"{latency['hybrid']['embed_p50']:.1f}", "")
    )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>14}  note")
    print("-" * (width + 34))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")


if __name__ == "__main__":
    main()

"""Retrieval benchmark: document-level hit@1/3/5/10 and MRR of each retrieval stage, beside a
naive baseline, on two corpora in one run. Prints a table. (Named after `ragtune retrieve`: a
bench/retrieval.py would hide the `retrieval` package from every script in this folder.)

Corpora:
- SEC 10-Q (../shared/data/sec10q): 20 quarterly filings (PDF) and the data set's single-document
  questions. A question is answered at rank r when the r-th retrieved chunk comes from a filing
  that its `Source Docs` glob names (the data set has no page-level gold).
- PubMedQA (../shared/data/pubmedqa): the 1000 labelled abstracts, one document each, and each
  abstract's own question; gold is the question's abstract.

Rows, each a ragtune build of the same documents searched with `Retriever.search_many`:
- naive baseline: what a user glues together in an afternoon, LangChain's
  RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=150) over the same extracted
  text, the same embedding model, a flat FAISS index;
- dense, BM25 and hybrid (the two fused by reciprocal rank) on chunks without headers;
- + headers: every chunk embedded and keyword-indexed under its document's title, section and
  page (`ingest.chunk_headers`);
- + document stage: documents ranked by their title and first page, fused into the chunk ranking
  (`retrieval.document_stage`), alone (on chunks without headers) and with the headers;
- + PDF tables: the default, tables on PDF pages loaded as Markdown tables whose header row
  every chunk of the table carries (`ingest.pdf_tables`; the rows above build without it);
- + rerank: a cross-encoder over the fused candidates, when `--reranker` names one that is
  available offline (`retrieval.reranker`).
The last column is the median time per question (query embedding included; the baseline's too).

Nothing is cached between runs: each build embeds its chunks. On two CPU cores the 20 filings
take minutes per build; `--docs` and `--questions` bound a run.

--smoke: 2 filings and 3 of their questions, 10 abstracts and their questions: seconds per
build; its figures only show that the script works.

Usage:
    python bench/retrieve.py [--sec ../shared/data/sec10q] [--pubmedqa ../shared/data/pubmedqa]
                              [--docs N] [--questions N] [--reranker MODEL] [--smoke]
                              [--stages 6,7] [--halves] [--ranks ranks.jsonl]
                              [--document-weights 1,2,4,8] [--document-scales reachable]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from machine import OtherLoad
from pubmedqa import read_pubmedqa, source_name, write_corpus
from sec10q import read_questions
from smoke import single_threaded

from builder.build import build
from builder.project import open_project
from retrieval.config import IndexConfig
from retrieval.embeddings import Encoder, encode_in_length_order, load_encoder
from retrieval.loaders import SUPPORTED_SUFFIXES, load_document
from retrieval.scan import scan_documents
from retrieval.search import Retriever

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
CUTOFFS = (1, 3, 5, 10)
NAIVE_CHARS, NAIVE_OVERLAP = 1000, 150
SMOKE_FILINGS = ("2023 Q1 AAPL.pdf", "2023 Q1 MSFT.pdf")
SMOKE_ABSTRACTS = 10
NAIVE = "naive: LangChain splitter 1000/150 + flat FAISS"


@dataclass(frozen=True)
class Question:
    text: str
    gold: frozenset[str]
    """Sources (paths relative to the documents folder) that answer it."""


@dataclass(frozen=True)
class Corpus:
    name: str
    docs: Path
    questions: list[Question]


@dataclass(frozen=True)
class Stage:
    """One row: the settings its build needs and the settings its search uses."""

    label: str
    build: tuple[str, ...]
    search: tuple[str, ...]


NO_TABLES = ("ingest.pdf_tables=false",)
NO_HEADERS = ("ingest.chunk_headers=false", *NO_TABLES)
HEADERS = ("ingest.chunk_headers=true", *NO_TABLES)
TABLES = ("ingest.chunk_headers=true", "ingest.pdf_tables=true")
CHUNKS_ALONE = ("retrieval.document_stage=false",)
STAGES = (
    Stage("dense", NO_HEADERS, ("retrieval.mode=dense",)),
    Stage("BM25", NO_HEADERS, ("retrieval.mode=keyword",)),
    Stage("hybrid (RRF)", NO_HEADERS, ("retrieval.mode=hybrid", *CHUNKS_ALONE)),
    Stage("hybrid + document stage", NO_HEADERS, ("retrieval.document_stage=true",)),
    Stage("hybrid + headers", HEADERS, ("retrieval.mode=hybrid", *CHUNKS_ALONE)),
    Stage("hybrid + headers + document stage", HEADERS, ("retrieval.document_stage=true",)),
    Stage("+ PDF tables (default)", TABLES, ("retrieval.document_stage=true",)),
)
"""The last row is the default configuration; with --reranker it is run once more, reranked."""


def weight_stages(weights: str, scales: str = "") -> list[Stage]:
    """The default row searched at each `retrieval.document_scale` in `scales` ('reachable';
    none given: the default scale) and each `retrieval.document_weight` in `weights` ('1,2,4')."""
    default = STAGES[-1]
    rows = []
    for scale in [s.strip() for s in scales.split(",") if s.strip()] or [""]:
        for weight in [w.strip() for w in weights.split(",") if w.strip()] or [""]:
            parts = [f"scale {scale}"] if scale else []
            parts += [f"document_weight {weight}"] if weight else []
            settings = [f"retrieval.document_scale={scale}"] if scale else []
            settings += [f"retrieval.document_weight={weight}"] if weight else []
            if settings:
                label = f"default, {', '.join(parts)}"
                rows.append(Stage(label, default.build, (*default.search, *settings)))
    return rows


@dataclass
class Row:
    label: str
    ranks: list[int | None]
    """Per question, the 1-based rank of the first gold chunk in the top 10, else None."""
    seconds: list[float]


def sec_corpus(folder: Path, work: Path, docs_limit: int, questions_limit: int, smoke: bool):
    """The filings (copied) and their single-document questions whose filing is kept."""
    questions, filings = read_questions(folder)
    if smoke:
        filings = [p for p in filings if p.name in SMOKE_FILINGS]
    elif docs_limit:
        filings = filings[:docs_limit]
    docs = work / "sec10q-docs"
    docs.mkdir(parents=True)
    for filing in filings:
        shutil.copy(filing, docs / filing.name)
    kept = {p.name for p in filings}
    chosen = [
        Question(q["question"], frozenset(q["sources"]))
        for q in questions
        if q["type"].startswith("Single-Doc") and set(q["sources"]) <= kept
    ]
    limit = 3 if smoke else questions_limit
    return Corpus("SEC 10-Q", docs, chosen[:limit] if limit else chosen)


def pubmedqa_corpus(folder: Path, work: Path, docs_limit: int, questions_limit: int, smoke: bool):
    """One markdown file per abstract (as bench/pubmedqa.py writes them), and its question."""
    abstracts, _test = read_pubmedqa(folder)
    limit = SMOKE_ABSTRACTS if smoke else docs_limit
    chosen = dict(list(abstracts.items())[:limit]) if limit else abstracts
    docs = work / "pubmedqa-docs"
    write_corpus(chosen, docs)
    questions = [
        Question(item["QUESTION"].strip(), frozenset([source_name(pmid)]))
        for pmid, item in chosen.items()
    ]
    if questions_limit and not smoke:
        questions = questions[:questions_limit]
    return Corpus("PubMedQA", docs, questions)


def first_gold_rank(sources: Sequence[str], gold: frozenset[str]) -> int | None:
    return next((rank for rank, source in enumerate(sources, 1) if source in gold), None)


def timed(questions: Sequence[Question], search: Callable[[str], list[str]]) -> tuple[list, list]:
    """Each question's first gold rank among the sources `search` returns, and its seconds."""
    ranks, seconds = [], []
    for question in questions:
        began = time.perf_counter()
        sources = search(question.text)
        seconds.append(time.perf_counter() - began)
        ranks.append(first_gold_rank(sources, question.gold))
    return ranks, seconds


def naive_baseline(corpus: Corpus, encoder: Encoder) -> Row:
    """RecursiveCharacterTextSplitter(1000, 150) over each document's text, the same encoder,
    exact inner-product search (the embeddings are normalized: cosine)."""
    import faiss
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=NAIVE_CHARS, chunk_overlap=NAIVE_OVERLAP)
    texts, sources = [], []
    found, _skipped = scan_documents(corpus.docs, SUPPORTED_SUFFIXES)
    for item in found:
        document = load_document(item.path, item.source, 1 << 30, root=corpus.docs)
        for piece in splitter.split_text(document.text):
            texts.append(piece)
            sources.append(item.source)
    vectors = encode_in_length_order(encoder, texts)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)

    def search(question: str) -> list[str]:
        _scores, rows = index.search(encoder.encode([question]), max(CUTOFFS))
        return [sources[row] for row in rows[0] if row >= 0]

    ranks, seconds = timed(corpus.questions, search)
    return Row(NAIVE, ranks, seconds)


def ragtune_rows(
    corpus: Corpus, encoder: Encoder, work: Path, stages: Sequence[Stage], reranker: str
) -> list[Row]:
    """One build per distinct build setting, then each stage's search over it."""
    rows = []
    built: dict[tuple[str, ...], Path] = {}
    for stage in stages:
        if stage.build not in built:
            root = work / f"{corpus.name.replace(' ', '-')}-{len(built)}"
            project = open_project(root, list(stage.build), docs=corpus.docs)
            began = time.perf_counter()
            report = build(project, encoder=encoder)
            print(
                f"{corpus.name}: built {report.total_chunks} chunks with {' '.join(stage.build)}"
                f" in {time.perf_counter() - began:.0f} s",
                file=sys.stderr,
            )
            built[stage.build] = root
        searches = [stage.search]
        if reranker and stage is stages[-1]:
            searches.append((*stage.search, f"retrieval.reranker={reranker}"))
        for search_settings in searches:
            project = open_project(built[stage.build], [*stage.build, *search_settings])
            retriever = Retriever.open(
                project.index_root, encoder, project.config.retrieval, IndexConfig()
            )
            try:
                retriever.search("warm-up")

                def search(question: str, retriever=retriever) -> list[str]:
                    return [hit.source for hit in retriever.search(question, max(CUTOFFS))]

                ranks, seconds = timed(corpus.questions, search)
            finally:
                retriever.close()
            label = stage.label if search_settings is stage.search else f"{stage.label} + rerank"
            rows.append(Row(label, ranks, seconds))
    return rows


def dev_half(question: Question) -> bool:
    """A fixed half of the questions, by a hash of their text: what a rule or a weight may be
    tuned on (`--halves` reports the other half apart)."""
    return hashlib.sha256(question.text.encode()).digest()[0] % 2 == 0


def halves(corpus: Corpus, rows: Sequence[Row]) -> list[tuple[Corpus, list[Row]]]:
    """The corpus and rows cut into the dev half and the held-out half."""
    out = []
    for name, keep in (("dev half", True), ("held-out half", False)):
        chosen = [i for i, q in enumerate(corpus.questions) if dev_half(q) == keep]
        part = Corpus(f"{corpus.name} ({name})", corpus.docs, [corpus.questions[i] for i in chosen])
        cut = [
            Row(r.label, [r.ranks[i] for i in chosen], [r.seconds[i] for i in chosen]) for r in rows
        ]
        out.append((part, cut))
    return out


def write_ranks(path: Path, corpus: Corpus, rows: Sequence[Row]) -> None:
    """Each question's first gold rank per row, as JSON lines (to study the misses)."""
    with path.open("a", encoding="utf-8") as out:
        for i, question in enumerate(corpus.questions):
            record = {
                "corpus": corpus.name,
                "question": question.text,
                "gold": sorted(question.gold),
                "dev": dev_half(question),
                "ranks": {row.label: row.ranks[i] for row in rows},
            }
            out.write(json.dumps(record) + "\n")


def table(corpus: Corpus, rows: Sequence[Row]) -> str:
    header = ["stage", *(f"hit@{k}" for k in CUTOFFS), "MRR@10", "ms/question p50"]
    lines = [header]
    for row in rows:
        n = len(row.ranks)
        hits = [sum(1 for r in row.ranks if r is not None and r <= k) / n for k in CUTOFFS]
        mrr = sum(1 / r for r in row.ranks if r is not None) / n
        median_ms = statistics.median(row.seconds) * 1000
        lines.append([row.label, *(f"{h:.3f}" for h in hits), f"{mrr:.3f}", f"{median_ms:.1f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    documents = len(scan_documents(corpus.docs, SUPPORTED_SUFFIXES)[0])
    out = [f"{corpus.name}: {documents} documents, {len(corpus.questions)} questions"]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sec", type=Path, default=DATA / "sec10q")
    parser.add_argument("--pubmedqa", type=Path, default=DATA / "pubmedqa")
    parser.add_argument("--docs", type=int, default=0, help="first N documents per corpus")
    parser.add_argument("--questions", type=int, default=0, help="first N questions per corpus")
    parser.add_argument("--reranker", default="", help="a cross-encoder id or folder")
    parser.add_argument("--corpora", default="sec10q,pubmedqa")
    parser.add_argument("--smoke", action="store_true", help="2 filings, 10 abstracts")
    parser.add_argument(
        "--stages", default="", help="rows to run, 1-based over the ragtune rows (default all)"
    )
    parser.add_argument(
        "--halves", action="store_true", help="also report the dev and held-out halves apart"
    )
    parser.add_argument("--ranks", type=Path, help="append each question's ranks (JSON lines)")
    parser.add_argument(
        "--document-scales",
        default="",
        help="also the default row at each of these retrieval.document_scale values",
    )
    parser.add_argument(
        "--document-weights",
        default="",
        help="also the default row at each of these retrieval.document_weight values (one build)",
    )
    args = parser.parse_args(argv)
    stages = [STAGES[int(i) - 1] for i in args.stages.split(",")] if args.stages else STAGES
    stages = [*stages, *weight_stages(args.document_weights, args.document_scales)]
    single_threaded()
    load = OtherLoad()
    encoder = load_encoder("embedded:all-MiniLM-L6-v2", device="cpu")
    encoder.load()
    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-retrieval-"))
    try:
        readers = {"sec10q": (sec_corpus, args.sec), "pubmedqa": (pubmedqa_corpus, args.pubmedqa)}
        for name in args.corpora.split(","):
            read, folder = readers[name]
            corpus = read(folder, work, args.docs, args.questions, args.smoke)
            if not corpus.questions:
                print(f"{corpus.name}: no questions for the chosen documents", file=sys.stderr)
                continue
            rows = [naive_baseline(corpus, encoder)]
            rows += ragtune_rows(corpus, encoder, work, stages, args.reranker)
            print(table(corpus, rows))
            print()
            if args.halves:
                for part, cut in halves(corpus, rows):
                    print(table(part, cut))
                    print()
            if args.ranks:
                write_ranks(args.ranks, corpus, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"other processes' share of the CPUs during the run: {load.share():.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

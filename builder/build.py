"""`ragtune build`: documents → chunks → embeddings → a new index generation.

Incremental: only new or changed files (by content hash) are loaded and embedded; chunks of
deleted files are dropped. A file that fails to load is skipped with its reason; if an older
version of it was indexed, that version is kept. Files are parsed in worker processes with
memory and time limits (`retrieval.parse_pool`), so that no file can hang or exhaust a build.

Two engines turn files into embedded chunks: `local` (the default: parse workers feeding one
embedding model in this process) and `ray` (`builder.ray_engine`: Ray tasks and an actor pool).
Everything around them (the scan, incremental reuse, the store, the search indexes, the atomic
commit) is the same code, so both write the same generation.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial as bind

from builder.project import Project
from retrieval.chunking import chunk_document, indexed_text, make_splitter
from retrieval.documents import Chunk, LoadError
from retrieval.embeddings import Encoder, encode_in_length_order, load_encoder
from retrieval.index import (
    CHUNKS_FILE,
    FORMAT_VERSION,
    IndexLayout,
    Manifest,
    read_manifest,
    write_search_indexes,
)
from retrieval.loaders import SUPPORTED_SUFFIXES, load_document
from retrieval.parse_pool import ParsePool
from retrieval.scan import FoundFile, document_sha256, scan_documents
from retrieval.store import ChunkStore, FileRecord

# Bump when loaders or chunking change what a file turns into: forces a full rebuild.
# 2: chunks of CJK text end at its sentence stops; its BM25 terms are character bigrams.
# 3: chunks carry their document's title; BM25 terms keep codes whole and in parts, numbers
#    without separators; a keyword index of the documents.
# 4: docx and html tables load as Markdown tables; chunks carry the header of their table.
# 5: tables on PDF pages load as Markdown tables (`ingest.pdf_tables`).
PIPELINE_VERSION = 5
# Chunks gathered before embedding: sorting a large window by length keeps padding, and so
# wasted compute, low (256-chunk windows cost ~10% more than one sorted pass).
EMBED_WINDOW = 4096

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while a build runs."""
ENGINES = ("local", "ray")


class BuildError(Exception):
    """The build produced nothing usable; the previous index, if any, is untouched.

    Attributes:
        report: what was found and skipped, for the user to see why.
    """

    def __init__(self, message: str, report: BuildReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Skip:
    source: str
    reason: str


@dataclass
class BuildReport:
    """What a build did, file by file."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    kept_previous: list[str] = field(default_factory=list)
    """Changed files that failed to load, whose previously indexed version was kept."""
    chunks_embedded: int = 0
    total_files: int = 0
    total_chunks: int = 0
    generation: int | None = None
    index_kind: str = ""
    vector_recall: float | None = None
    """recall@10 of an approximate vector index against exact search; None when exact."""
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def index_settings(project: Project) -> dict:
    """Everything that changes chunks or vectors, recorded in the manifest."""
    return {
        "pipeline": PIPELINE_VERSION,
        "model": project.config.embedding.model,
        "chunk_tokens": project.config.ingest.chunk_tokens,
        "chunk_overlap": project.config.ingest.chunk_overlap,
        "chunk_headers": project.config.ingest.chunk_headers,
        "pdf_tables": project.config.ingest.pdf_tables,
    }


def _signature(settings: dict) -> str:
    """A different signature means a full rebuild."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Loaded:
    found: FoundFile
    sha256: str
    chunks: list[Chunk] | None
    error: str | None


def _load_and_chunk(
    files: list[tuple[FoundFile, str]],
    project: Project,
    encoder: Encoder,
    pool: ParsePool,
    out: queue.Queue,
) -> None:
    """Producer thread: chunk the files the pool's workers parse, while the main thread embeds
    earlier ones; puts None when done, after an error that is not one file's own."""
    splitter = make_splitter(
        encoder.count_tokens,
        project.config.ingest.chunk_tokens,
        project.config.ingest.chunk_overlap,
    )
    try:
        parsed = pool.parse([(found.path, found.source) for found, _ in files])
        for (found, sha256), result in zip(files, parsed):
            if result.document is None:
                out.put(_Loaded(found, sha256, None, result.error))
                continue
            try:
                chunks = chunk_document(result.document, splitter)
            # Chunking is linear-time code of ours, but a failure must cost one file only.
            except Exception as error:
                reason = f"could not be chunked ({type(error).__name__}: {error})"
                out.put(_Loaded(found, sha256, None, reason))
                continue
            if chunks:
                out.put(_Loaded(found, sha256, chunks, None))
            else:
                out.put(_Loaded(found, sha256, None, "no text found"))
    # Anything else (the workers could not start) fails the build rather than leaving files out.
    except Exception as error:
        out.put(error)
    finally:
        out.put(None)


def build(
    project: Project,
    *,
    full: bool = False,
    encoder: Encoder | None = None,
    progress: Progress | None = None,
    engine: str = "local",
    workers: int = 2,
    make_encoder: Callable[[], Encoder] | None = None,
) -> BuildReport:
    """Bring the project's index up to date with its documents folder.

    Args:
        project: the opened project (settings already validated).
        full: re-embed every file even if unchanged.
        encoder: the embedding model; loaded from the settings when None (tests pass a fake).
        progress: optional callback for progress bars.
        engine: 'local' or 'ray' (see the module docstring).
        workers: the ray engine's embedding actors (one model each) and local Ray CPUs.
        make_encoder: the ray engine's encoder factory, run inside each Ray worker; a
            module-level callable. Default: the project's embedding model.

    Returns:
        What was added, updated, removed, left unchanged and skipped.

    Raises:
        FileNotFoundError: the documents folder does not exist.
        BuildError: nothing could be indexed; the previous index is kept.
        ValueError: an unknown engine.
        RayEngineError: the ray engine without Ray Data installed.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown build engine {engine!r} (valid: {', '.join(ENGINES)})")
    started = time.perf_counter()
    notify = progress or (lambda stage, done, total: None)
    report = BuildReport()
    found, scan_skips = scan_documents(project.docs_dir, SUPPORTED_SUFFIXES)
    report.skipped.extend(Skip(s.source, s.reason) for s in scan_skips)

    layout = IndexLayout(project.index_root)
    previous = layout.current()
    settings = index_settings(project)
    signature = _signature(settings)
    old_files: dict[str, FileRecord] = {}
    reuse_previous = False
    if previous is not None and previous.is_dir():
        manifest = read_manifest(previous)
        # An index of an older format cannot be opened, so nothing of it is kept.
        current = manifest.signature == signature and manifest.format == FORMAT_VERSION
        reuse_previous = current and not full
        with ChunkStore(previous / CHUNKS_FILE, readonly=True) as old_store:
            old_files = old_store.files()

    to_process: list[tuple[FoundFile, str]] = []
    for index, item in enumerate(found):
        notify("scan", index, len(found))
        try:
            # Refused by size, type and place before a byte is read (see `open_regular`).
            sha256 = document_sha256(item.path, project.config.ingest.max_bytes, project.docs_dir)
        except LoadError as error:
            report.skipped.append(Skip(item.source, str(error)))
            if reuse_previous and item.source in old_files:
                report.kept_previous.append(item.source)
            continue
        old = old_files.get(item.source)
        if reuse_previous and old is not None and old.sha256 == sha256:
            report.unchanged.append(item.source)
        else:
            to_process.append((item, sha256))
    notify("scan", len(found), len(found))
    present = {item.source for item in found}
    report.removed = sorted(source for source in old_files if source not in present)

    if reuse_previous and not to_process and not report.removed:
        return _finish(report, previous, started)

    encoder = encoder or load_encoder(
        project.config.embedding.model,
        device=project.config.embedding.device,
        batch_size=project.config.embedding.batch_size,
    )
    number, partial = layout.start_generation()
    try:
        store_path = partial / CHUNKS_FILE
        if reuse_previous:
            with ChunkStore(previous / CHUNKS_FILE, readonly=True) as old_store:
                old_store.backup_to(store_path)
        with ChunkStore(store_path) as store:
            for source in report.removed:
                store.remove_file(source)
            if engine == "ray":
                make_encoder = make_encoder or bind(
                    load_encoder,
                    project.config.embedding.model,
                    device=project.config.embedding.device,
                    batch_size=project.config.embedding.batch_size,
                )
                outcome = _Outcome(store, old_files, reuse_previous, report)
                _embed_files_ray(
                    to_process, project, make_encoder, partial, workers, outcome, notify
                )
            else:
                _embed_files(
                    to_process, project, encoder, store, old_files, reuse_previous, report, notify
                )
            total = store.renumber()
            if total == 0:
                raise BuildError(_nothing_indexed(project, report), report)
            notify("index", 0, 1)
            written = write_search_indexes(
                store,
                partial,
                encoder.dim,
                project.config.index,
                project.config.ingest.chunk_headers,
            )
            notify("index", 1, 1)
            n_files = len(store.files())
        manifest = Manifest(
            generation=number,
            embedding_model=project.config.embedding.model,
            dim=encoder.dim,
            index_kind=written.kind,
            vector_recall=written.recall,
            signature=signature,
            settings=settings,
            files=n_files,
            chunks=total,
        )
        final = layout.commit(partial, manifest)
    except BaseException:
        layout.abandon(partial)
        raise
    return _finish(report, final, started)


def _embed_files(
    to_process: list[tuple[FoundFile, str]],
    project: Project,
    encoder: Encoder,
    store: ChunkStore,
    old_files: dict[str, FileRecord],
    reuse_previous: bool,
    report: BuildReport,
    notify: Progress,
) -> None:
    """Load, chunk, embed and store the files, embedding many files' chunks per window."""
    if not to_process:
        return
    # Load the weights while the first files are read and chunked.
    warm = threading.Thread(target=encoder.load, daemon=True)
    warm.start()
    loaded: queue.Queue = queue.Queue(maxsize=256)
    # Parsing runs in worker processes, so that no file can hang or exhaust the build.
    pool = ParsePool(project.config.ingest, project.docs_dir, load_document)
    producer = threading.Thread(
        target=_load_and_chunk, args=(to_process, project, encoder, pool, loaded), daemon=True
    )
    producer.start()
    pending: list[_Loaded] = []
    files_done = chunks_seen = pending_chunks = 0
    notify("load", 0, len(to_process))

    def flush() -> None:
        nonlocal pending_chunks
        warm.join()
        headers = project.config.ingest.chunk_headers
        texts = [indexed_text(chunk, headers) for item in pending for chunk in item.chunks]

        def advance(count: int) -> None:
            report.chunks_embedded += count
            notify("embed", report.chunks_embedded, chunks_seen)

        vectors = encode_in_length_order(encoder, texts, on_progress=advance)
        offset = 0
        for item in pending:
            count = len(item.chunks)
            record = FileRecord(item.found.source, item.sha256, item.found.size, count)
            store.replace_file(record, item.chunks, vectors[offset : offset + count])
            offset += count
            is_update = item.found.source in old_files
            (report.updated if is_update else report.added).append(item.found.source)
        pending.clear()
        pending_chunks = 0

    try:
        while (item := loaded.get()) is not None:
            if isinstance(item, Exception):
                raise item
            files_done += 1
            notify("load", files_done, len(to_process))
            if item.error is not None:
                report.skipped.append(Skip(item.found.source, item.error))
                # A full rebuild starts from an empty store, so only an incremental one can
                # keep the previously indexed version of a file that now fails.
                if reuse_previous and item.found.source in old_files:
                    report.kept_previous.append(item.found.source)
                continue
            pending.append(item)
            chunks_seen += len(item.chunks)
            pending_chunks += len(item.chunks)
            if pending_chunks >= EMBED_WINDOW:
                flush()
    finally:
        # Also on Ctrl-C or an error while embedding: no worker outlives the build.
        pool.close()
    if pending:
        flush()
    producer.join()


class _Outcome:
    """Records what became of each file the ray engine returns, as `_embed_files` does."""

    def __init__(
        self,
        store: ChunkStore,
        old_files: dict[str, FileRecord],
        reuse_previous: bool,
        report: BuildReport,
    ) -> None:
        self.store = store
        self.old_files = old_files
        self.reuse_previous = reuse_previous
        self.report = report

    def skipped(self, source: str, reason: str) -> None:
        self.report.skipped.append(Skip(source, reason))
        # A full rebuild starts from an empty store: only an incremental one keeps the old one.
        if self.reuse_previous and source in self.old_files:
            self.report.kept_previous.append(source)

    def stored(self, found: FoundFile, sha256: str, chunks: list[Chunk], vectors) -> None:
        record = FileRecord(found.source, sha256, found.size, len(chunks))
        self.store.replace_file(record, chunks, vectors)
        self.report.chunks_embedded += len(chunks)
        is_update = found.source in self.old_files
        (self.report.updated if is_update else self.report.added).append(found.source)


def _embed_files_ray(
    to_process: list[tuple[FoundFile, str]],
    project: Project,
    make_encoder: Callable[[], Encoder],
    partial,
    workers: int,
    outcome: _Outcome,
    notify: Progress,
) -> None:
    """Load, chunk and embed the files on Ray (`builder.ray_engine`) and store the results."""
    from builder.ray_engine import SHARDS_DIR, ChunkSettings, embed_with_ray

    if not to_process:
        return
    ingest = project.config.ingest
    settings = ChunkSettings(ingest, project.docs_dir, ingest.chunk_headers)
    by_source = {found.source: (found, sha256) for found, sha256 in to_process}
    files = [(found.path, found.source) for found, _ in to_process]
    shards = partial / SHARDS_DIR
    notify("load", 0, len(files))
    for done, result in enumerate(embed_with_ray(files, settings, make_encoder, shards, workers)):
        found, sha256 = by_source[result.source]
        if result.error is not None:
            outcome.skipped(result.source, result.error)
        else:
            outcome.stored(found, sha256, result.chunks, result.vectors)
        notify("load", done + 1, len(files))
    # The shards are scratch: the generation holds what the local engine writes, no more.
    shutil.rmtree(shards)
    order = {found.source: i for i, (found, _) in enumerate(to_process)}
    for names in (outcome.report.added, outcome.report.updated, outcome.report.kept_previous):
        names.sort(key=order.__getitem__)


def _nothing_indexed(project: Project, report: BuildReport) -> str:
    if report.skipped:
        return (
            f"nothing could be indexed from {project.docs_dir}: every file was skipped "
            f"({len(report.skipped)} skipped)"
        )
    return f"no documents found in {project.docs_dir} (supported: {', '.join(SUPPORTED_SUFFIXES)})"


def _finish(report: BuildReport, generation_dir, started: float) -> BuildReport:
    manifest = read_manifest(generation_dir)
    report.generation = manifest.generation
    report.total_files = manifest.files
    report.total_chunks = manifest.chunks
    report.index_kind = manifest.index_kind
    report.vector_recall = manifest.vector_recall
    report.seconds = time.perf_counter() - started
    report.skipped.sort(key=lambda s: s.source)
    return report

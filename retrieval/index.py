"""The on-disk index of a project: generations committed atomically.

    PROJECT/index/CURRENT             name of the live generation, e.g. "gen-000003"
    PROJECT/index/gen-000003/
        chunks.sqlite                 chunks, embeddings, file records
        vectors.faiss                 FAISS index, row i = chunk row i
        keywords/                     BM25 arrays (.npy) and vocabulary (.json)
        documents/                    BM25 of each document's title and first page, its rows
        manifest.json                 models, dimensions, counts, sha256 of every file above

A build writes a new generation into `gen-N.partial/`, renames it to `gen-N/` when complete,
then replaces CURRENT (temp file + rename). A build killed at any point leaves CURRENT naming the
previous, complete generation, whose files were never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.chunking import indexed_text
from retrieval.config import IndexConfig
from retrieval.document_index import DocumentIndex
from retrieval.keyword_index import KeywordIndex
from retrieval.keyword_terms import terms_of
from retrieval.scan import file_sha256
from retrieval.store import ChunkStore
from retrieval.vector_index import (
    RECALL_K,
    RECALL_QUERIES,
    build_compressed_index,
    build_vector_index,
    choose_kind,
    index_kind,
    load_vector_index,
    recall_at_k,
    save_vector_index,
    train_rows,
)

FORMAT_VERSION = 4
"""2: chunks carry their document's title; a keyword index of the documents. 3: chunks carry
the header row of the table they continue. 4: the documents' keyword index is two, titles and
first pages, the first pages' terms weighed by the documents' whole text."""
CHUNKS_FILE = "chunks.sqlite"
VECTORS_FILE = "vectors.faiss"
KEYWORDS_DIR = "keywords"
DOCUMENTS_DIR = "documents"
MANIFEST_FILE = "manifest.json"
_CURRENT = "CURRENT"
_PARTIAL_SUFFIX = ".partial"


class IndexLoadError(Exception):
    """A project index that is missing, incomplete or inconsistent."""


@dataclass
class Manifest:
    """What a generation holds; written last, read first."""

    generation: int
    embedding_model: str
    dim: int
    index_kind: str
    signature: str
    """Hash of every setting that changes chunks or vectors; a change forces a full rebuild."""
    files: int
    chunks: int
    checksums: dict[str, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    """The settings the signature hashes (embedding model, chunk size, chunk headers, ...)."""
    format: int = FORMAT_VERSION
    vector_recall: float | None = None
    """recall@10 of an approximate vector index against exact search, measured at build time
    on stored vectors as queries; None for exact (flat) search."""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # Created exclusively, never through a link: a symlink planted at this predictable name
    # must not redirect the write. What is there (a planted link, or what a killed writer with
    # this pid left) is removed first; unlinking a link never touches its target.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
    )
    with open(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def checksums(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in _data_files(folder)}


_POINTER_BYTES = 256


def read_pointer(pointer: Path) -> str | None:
    """The folder name a CURRENT file holds; None without the file, or when it is empty.

    A project folder can come from anyone, so the name must be one plain folder next to the
    file: no '/', '..', absolute path, control or format character, nor a link, which would
    point the engine (and a build's clean-up) elsewhere.

    Raises:
        ValueError: the file holds anything else; the message names the file and its text.
    """
    if not pointer.is_file():
        return None
    with open(pointer, "rb") as handle:
        raw = handle.read(_POINTER_BYTES + 1)
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        name = None
    if name == "":
        return None
    if (
        name is None
        or len(raw) > _POINTER_BYTES
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or any(unicodedata.category(c)[0] in "CZ" and c != " " for c in name)
        or (pointer.parent / name).is_symlink()
    ):
        shown = repr(raw[:60].decode("utf-8", errors="replace"))
        raise ValueError(f"{pointer} must hold the name of a folder next to it, not {shown}")
    return name


class IndexLayout:
    """The generations folder of one project."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def current_name(self) -> str | None:
        """The live generation's name, None before the first build.

        Raises:
            IndexLoadError: CURRENT names anything but a generation folder next to it.
        """
        try:
            return read_pointer(self.root / _CURRENT)
        except ValueError as error:
            raise IndexLoadError(
                f"{error}: delete it and run `ragtune build PROJECT --full`"
            ) from error

    def current(self) -> Path | None:
        """The live generation's folder, or None before the first build."""
        name = self.current_name()
        return self.root / name if name else None

    def start_generation(self) -> tuple[int, Path]:
        """Create an empty partial folder for the next generation, clearing abandoned ones."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(f"gen-*{_PARTIAL_SUFFIX}"):
            shutil.rmtree(stale, ignore_errors=True)
        numbers = [
            int(p.name.split("-")[1])
            for p in self.root.glob("gen-*")
            if p.is_dir() and p.name.split("-")[1].isdigit()
        ]
        number = max(numbers, default=0) + 1
        partial = self.root / f"gen-{number:06d}{_PARTIAL_SUFFIX}"
        partial.mkdir()
        return number, partial

    def commit(self, partial: Path, manifest: Manifest) -> Path:
        """Seal a partial generation and make it the live one; then drop older generations."""
        manifest.checksums = checksums(partial)
        for path in _data_files(partial):
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        (partial / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        final = partial.with_name(partial.name[: -len(_PARTIAL_SUFFIX)])
        os.replace(partial, final)
        _fsync_dir(self.root)
        write_atomic(self.root / _CURRENT, f"{final.name}\n".encode())
        for old in self.root.glob("gen-*"):
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return final

    def abandon(self, partial: Path) -> None:
        shutil.rmtree(partial, ignore_errors=True)


# Vectors read from the store at a time while an IVF-PQ index is filled (150 MB at 384 dims).
SHARD_ROWS = 100_000


@dataclass
class SearchIndexes:
    """What `write_search_indexes` chose and measured."""

    kind: str
    """The vector index kind: 'flat', 'hnsw', 'ivf' or 'ivfpq'."""
    recall: float | None
    """recall@10 against exact search; None for flat (exact) search."""


def write_search_indexes(
    store: ChunkStore, folder: Path, dim: int, config: IndexConfig, headers: bool
) -> SearchIndexes:
    """Write the FAISS and BM25 indexes of every chunk in `store` (already renumbered), and the
    documents' BM25, into a partial generation folder.

    Past `config.compressed_from` chunks (or with kind 'ivfpq') the vector index is IVF-PQ,
    trained on a sample and filled shard by shard from the store. An approximate index gets its
    recall@10 against exact search measured on `RECALL_QUERIES` stored vectors.

    Args:
        headers: keyword-index each chunk under its header (`ingest.chunk_headers`), as it was
            embedded.

    Returns:
        The vector index kind chosen and its recall@10.
    """
    vectors, recall = _vector_index(store, dim, config)
    save_vector_index(vectors, folder / VECTORS_FILE)
    chunks = list(store.iter_chunks())
    terms = terms_of([indexed_text(chunk, headers) for chunk in chunks])
    keywords = KeywordIndex.from_terms(terms)
    (folder / KEYWORDS_DIR).mkdir()
    keywords.save(folder / KEYWORDS_DIR)
    DocumentIndex.build(chunks, terms).save(folder / DOCUMENTS_DIR)
    return SearchIndexes(index_kind(vectors), recall)


def _vector_index(store: ChunkStore, dim: int, config: IndexConfig):
    """The vector index of the store's embeddings and its recall@10 (None when exact)."""
    n = store.count()
    kind = choose_kind(config, n)
    if kind == "ivfpq" and n:
        sample = store.embeddings_at(train_rows(n), dim)
        index = build_compressed_index(sample, store.iter_embeddings(dim, SHARD_ROWS), n, config)
    else:
        index = build_vector_index(store.embeddings(dim), config)
    if kind == "flat" or n == 0:
        return index, None
    rows = np.random.default_rng(1).choice(n, size=min(n, RECALL_QUERIES), replace=False)
    queries = store.embeddings_at(rows, dim)
    return index, recall_at_k(
        index, queries, rows, store.iter_embeddings(dim, SHARD_ROWS), RECALL_K
    )


def read_manifest(generation: Path) -> Manifest:
    path = generation / MANIFEST_FILE
    try:
        return Manifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise IndexLoadError(f"{path}: unreadable manifest ({error}); rebuild the index") from error


@dataclass
class LoadedIndex:
    """A live generation opened for search."""

    folder: Path
    manifest: Manifest
    store: ChunkStore
    vectors: object
    keywords: KeywordIndex
    documents: DocumentIndex

    def close(self) -> None:
        self.store.close()


def open_index(root: Path, config: IndexConfig) -> LoadedIndex:
    """Open the live generation under `root` for search.

    Args:
        root: the project's index folder.
        config: search-time index settings.

    Raises:
        IndexLoadError: no build yet, or files that do not match their manifest.
    """
    layout = IndexLayout(root)
    folder = layout.current()
    if folder is None or not folder.is_dir():
        raise IndexLoadError(f"no index in {root}; run `ragtune build PROJECT --docs DIR` first")
    manifest = read_manifest(folder)
    if manifest.format != FORMAT_VERSION:
        raise IndexLoadError(
            f"{folder}: index format {manifest.format}, this ragtune reads {FORMAT_VERSION}; "
            "rebuild it with `ragtune build PROJECT`"
        )
    found = checksums(folder)
    if found != manifest.checksums:
        bad = sorted(set(found.items()) ^ set(manifest.checksums.items()))
        names = sorted({name for name, _ in bad})
        raise IndexLoadError(
            f"{folder}: {', '.join(names)} changed since the build (checksum mismatch); "
            "rebuild with `ragtune build PROJECT --full`"
        )
    store = ChunkStore(folder / CHUNKS_FILE, readonly=True)
    vectors = load_vector_index(folder / VECTORS_FILE, config)
    keywords = KeywordIndex.load(folder / KEYWORDS_DIR)
    documents = DocumentIndex.load(folder / DOCUMENTS_DIR)
    counts = {"manifest": manifest.chunks, "vectors": vectors.ntotal, "keywords": keywords.size}
    if len(set(counts.values())) != 1 or documents.size != manifest.files:
        store.close()
        counts["documents"] = documents.size
        raise IndexLoadError(f"{folder}: inconsistent chunk counts {counts}; rebuild with --full")
    return LoadedIndex(folder, manifest, store, vectors, keywords, documents)

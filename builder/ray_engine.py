"""`ragtune build --engine ray`: read, parse and chunk files as Ray tasks, embed the chunks in a
pool of actors (one model each, batched), write the results as Parquet shards, and hand them to
the build, which stores them and writes the index generation exactly as the local engine does.

The shards live inside the partial generation folder, so a build killed at any point leaves
them where the next build clears them, and the live generation untouched. Each task parses its
files in a `ParsePool` of its own, with the same per-file time and memory limits as the local
engine: a hostile file costs that file only, not the task.

Ray is imported lazily: without it, the engine says how to install it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.chunking import chunk_document, indexed_text, make_splitter
from retrieval.config import IngestConfig
from retrieval.documents import Chunk
from retrieval.embeddings import Encoder
from retrieval.loaders import load_document
from retrieval.parse_pool import ParsePool

RAY_NEEDED = "the ray engine needs Ray Data: pip install 'ray[data]' (or pip install -e '.[ray]')"
SHARDS_DIR = ".shards"
# Files a parse task takes: enough that its parse worker's start (about a second) is shared by
# many files, few enough that two workers get several tasks each on a small corpus.
FILES_PER_TASK = 16
# Chunks an actor embeds per call, sorted by length inside as the local engine's windows are:
# small enough that a corpus of a few thousand chunks keeps every actor busy.
EMBED_BATCH = 256

EncoderFactory = Callable[[], Encoder]
"""Makes the embedding model inside a Ray worker; module-level (picklable by reference)."""


class RayEngineError(RuntimeError):
    """The Ray engine cannot run; the message says what to install or change."""


@dataclass(frozen=True)
class ChunkSettings:
    """What a parse task needs to turn a file into chunks as the local engine does."""

    ingest: IngestConfig
    docs_dir: Path
    headers: bool


@dataclass
class FileResult:
    """One file as the engine returns it: its chunks and their vectors, or why it is skipped."""

    source: str
    chunks: list[Chunk]
    vectors: np.ndarray | None
    error: str | None


def require_ray() -> Any:
    """The `ray` module.

    Raises:
        RayEngineError: Ray Data is not installed.
    """
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise RayEngineError(RAY_NEEDED) from error
    return ray


def _parse_and_chunk(
    batch: dict[str, np.ndarray], settings: ChunkSettings, make_encoder: EncoderFactory
) -> dict[str, list]:
    """A Ray task's work on a batch of files: parse each in a worker process, chunk it.

    One output row a chunk, or one row with `error` for a file that is skipped; every row of a
    file carries `n_chunks`, so the rows of a file can be put back together in any order.
    """
    encoder = make_encoder()  # the tokenizer only: weights load on the first encode
    ingest = settings.ingest
    splitter = make_splitter(encoder.count_tokens, ingest.chunk_tokens, ingest.chunk_overlap)
    files = [(Path(p), str(s)) for p, s in zip(batch["path"], batch["source"])]
    rows: dict[str, list] = {key: [] for key in ("source", "n_chunks", "error", "chunk", "text")}

    def add(source: str, n_chunks: int, error: str, chunk: str = "", text: str = "") -> None:
        for key, value in zip(rows, (source, n_chunks, error, chunk, text)):
            rows[key].append(value)

    one_worker = replace(ingest, parse_workers=1)  # Ray runs the tasks side by side
    with ParsePool(one_worker, settings.docs_dir, load_document) as pool:
        for (_, source), result in zip(files, pool.parse(files)):
            if result.document is None:
                add(source, 0, result.error or "could not be read")
                continue
            try:
                chunks = chunk_document(result.document, splitter)
            # Chunking is linear-time code of ours, but a failure must cost one file only.
            except Exception as error:
                add(source, 0, f"could not be chunked ({type(error).__name__}: {error})")
                continue
            if not chunks:
                add(source, 0, "no text found")
            for chunk in chunks:
                text = indexed_text(chunk, settings.headers)
                add(source, len(chunks), "", json.dumps(asdict(chunk)), text)
    return rows


class _Embed:
    """A Ray actor: one embedding model, loaded once, encoding batches of chunk texts."""

    def __init__(self, make_encoder: EncoderFactory) -> None:
        from retrieval.embeddings import encode_in_length_order

        self.encoder = make_encoder()
        self.encoder.load()
        self.encode = encode_in_length_order

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        wanted = [i for i, text in enumerate(texts) if text]
        vectors = self.encode(self.encoder, [texts[i] for i in wanted])
        blobs = [b""] * len(texts)
        for i, vector in zip(wanted, vectors):
            blobs[i] = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        return {**batch, "embedding": np.array(blobs, dtype=object)}


def embed_with_ray(
    files: list[tuple[Path, str]],
    settings: ChunkSettings,
    make_encoder: EncoderFactory,
    shards: Path,
    workers: int,
) -> Iterator[FileResult]:
    """Parse, chunk and embed `files` on Ray; yield each file's result as its shards are read.

    Starts a local Ray of `workers` CPUs unless Ray is already initialized (e.g. connected to a
    cluster), and stops only what it started.

    Args:
        files: (path, source) pairs.
        settings: the ingest limits, documents folder and chunk headers.
        make_encoder: builds the embedding model in each worker.
        shards: an empty folder for the Parquet shards (inside the partial generation).
        workers: embedding actors (each holds one model), and the CPUs of a local Ray.

    Raises:
        RayEngineError: Ray Data is missing, or `workers` is below 1.
    """
    if workers < 1:
        raise RayEngineError(f"--workers {workers}: the ray engine needs at least 1 worker")
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        _run_pipeline(ray, files, settings, make_encoder, shards, workers)
    finally:
        if started:
            ray.shutdown()
    yield from _read_shards(shards)


def _run_pipeline(
    ray: Any,
    files: list[tuple[Path, str]],
    settings: ChunkSettings,
    make_encoder: EncoderFactory,
    shards: Path,
    workers: int,
) -> None:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    items = [{"path": str(path), "source": source} for path, source in files]
    blocks = max(1, -(-len(items) // FILES_PER_TASK))
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    # Logical CPUs: N actors on N CPUs take 0.75 each, which leaves room for the parse tasks
    # (0.25 each) that feed them; with a whole CPU each, the actors starved them (seen: a build
    # on `ray.init(num_cpus=2)` with 2 actors never started a parse task).
    chunked = dataset.map_batches(
        _parse_and_chunk,
        fn_kwargs={"settings": settings, "make_encoder": make_encoder},
        batch_size=FILES_PER_TASK,
        num_cpus=0.25,
    )
    embedded = chunked.map_batches(
        _Embed,
        fn_constructor_args=(make_encoder,),
        batch_size=EMBED_BATCH,
        num_cpus=0.75,
        compute=ray.data.ActorPoolStrategy(size=workers),
    )
    shards.mkdir(parents=True, exist_ok=True)
    embedded.write_parquet(str(shards))


def _read_shards(shards: Path) -> Iterator[FileResult]:
    """Each file's rows from the shards, put back together: a file is yielded once all its
    chunks were read, so memory holds only the files whose rows are split across shards."""
    import pyarrow.parquet as pq

    waiting: dict[str, list[tuple[Chunk, bytes]]] = {}
    for shard in sorted(shards.glob("*.parquet")):
        table = pq.read_table(shard).to_pydict()
        for source, n_chunks, error, chunk, blob in zip(
            table["source"], table["n_chunks"], table["error"], table["chunk"], table["embedding"]
        ):
            if error:
                yield FileResult(source, [], None, error)
                continue
            rows = waiting.setdefault(source, [])
            rows.append((Chunk(**json.loads(chunk)), blob))
            if len(rows) == n_chunks:
                del waiting[source]
                rows.sort(key=lambda row: row[0].position)
                vectors = np.stack([np.frombuffer(b, dtype=np.float32) for _, b in rows])
                yield FileResult(source, [c for c, _ in rows], vectors, None)
    if waiting:
        raise RayEngineError(
            f"the Ray shards in {shards} lack chunks of {sorted(waiting)[:3]}: rebuild"
        )

"""Parse documents in worker processes with memory and time limits, so that no single file can
take a build down: a decompression bomb, a pathological PDF or a parser that hangs costs only
its own file, which is skipped with a one-line reason, and the build goes on.

A few workers (`ingest.parse_workers`) are forked from multiprocessing's fork server, which has
imported the loaders once, so a worker starts in milliseconds rather than the second a fresh
interpreter takes. A worker caps its own address space (`RLIMIT_AS`, Linux) at what it maps when
it starts plus `ingest.parse_memory_mb`: a parse that needs more fails with MemoryError (or
crashes) and the worker is replaced. A worker that has not answered within
`ingest.parse_timeout_s` (wall clock, counted from when it said it is ready) is killed and a
fresh one started. A worker that cannot start at all (within `START_WAIT_S`, or
`parse_timeout_s` when longer) raises `ParseWorkerError`; as everywhere
in multiprocessing, a script that builds must do so under `if __name__ == "__main__":`, since
the fork server imports the main script.

No worker outlives the build: workers ignore Ctrl-C (a terminal sends it to the whole process
group; the build's own KeyboardInterrupt stops them), `close` kills them, and the kernel kills
them when their fork server ends, which it does when this process does.

Documents come back as JSON, not pickles: this process never unpickles what a process that
reads hostile files sends it.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import re
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from retrieval.config import IngestConfig
from retrieval.documents import LoadedDocument, LoadError, LoadLimits, TextBlock
from retrieval.loaders import load_document

Loader = Callable[[Path, str, int, LoadLimits, Path | None], LoadedDocument]
"""`load_document`'s signature: (path, source, max_bytes, limits, root)."""

# Parsed documents held ahead of the one the caller waits for, per worker: enough to keep the
# workers busy behind one slow file, few enough that memory stays bounded.
_AHEAD_PER_WORKER = 4
_PR_SET_PDEATHSIG = 1
_READY = b"ready"
_EXIT_WAIT_S = 2.0
START_WAIT_S = 60.0
"""The least time a new worker gets to say it is ready, whatever `parse_timeout_s` is: the first
one also starts the fork server, which on a loaded machine takes seconds."""
_MB = 1024 * 1024


class ParseWorkerError(RuntimeError):
    """A parse worker could not start: no file can be parsed (the message says why)."""


@dataclass(frozen=True)
class Parsed:
    """What one file turned into: its document, or the one-line reason it is skipped."""

    document: LoadedDocument | None
    error: str | None = None


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    job: int | None = None
    """Index of the file it is parsing; None when idle."""
    deadline: float = 0.0


class ParsePool:
    """Worker processes that turn files into `LoadedDocument`s within the ingest limits.

    Use as a context manager (or call `close`); one thread iterates `parse`, any thread may
    `close`, which stops the workers at once and ends `parse` early.
    """

    def __init__(self, ingest: IngestConfig, root: Path | None, load: Loader = load_document):
        """
        Args:
            ingest: the limits: file size, pages, characters, unpacked bytes, and the workers'
                count, time and memory.
            root: the documents folder (files whose real path leaves it are refused).
            load: the function a worker runs on each file; a module-level function, since the
                worker imports it by name.
        """
        self._ingest = ingest
        self._root = root
        self._load = load
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._context = multiprocessing.get_context("forkserver")
        # '__main__' is the default; keeping it means a worker does not import the main script.
        self._context.set_forkserver_preload(["__main__", __name__])

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def parse(self, files: Sequence[tuple[Path, str]]) -> Iterator[Parsed]:
        """Parse each (path, source) pair; yields one `Parsed` per file, in the order given.

        Stops early, without an error, once `close` has been called.
        """
        waiting = deque(range(len(files)))
        done: dict[int, Parsed] = {}
        ahead = _AHEAD_PER_WORKER * self._ingest.parse_workers
        wanted = 0
        while wanted < len(files) and not self._closed:
            while waiting and waiting[0] < wanted + ahead:
                worker = self._idle_worker(len(files))
                if worker is None:
                    break
                index = waiting.popleft()
                path, source = files[index]
                worker.conn.send_bytes(json.dumps([str(path), source]).encode())
                worker.job = index
                worker.deadline = time.monotonic() + self._ingest.parse_timeout_s
            self._collect(done)
            if self._closed:
                return
            while wanted in done:
                yield done.pop(wanted)
                wanted += 1

    def close(self) -> None:
        """Kill every worker (idempotent, from any thread)."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.process.kill()
        for worker in workers:
            worker.process.join()

    def _idle_worker(self, files: int) -> _Worker | None:
        """An idle worker, started if fewer than `parse_workers` run; None when all are busy.

        Raises:
            ParseWorkerError: a new worker did not start.
        """
        for worker in self._workers:
            if worker.job is None:
                return worker
        if len(self._workers) >= min(self._ingest.parse_workers, files):
            return None
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(theirs, self._load, self._ingest, self._root),
            name="ragtune-parse",
            daemon=True,
        )
        with self._lock:
            if self._closed:
                return None
            # A Ctrl-C is the build's to handle; the fork server, started by the first start(),
            # would die of it until it ignores SIGINT, and it inherits this thread's mask.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            worker = _Worker(process, ours)
            self._workers.append(worker)
        theirs.close()
        # A file's time starts once its worker runs: starting the fork server may take seconds.
        if not self._ready(worker) and not self._closed:
            self._stop(worker, _EXIT_WAIT_S)
            raise ParseWorkerError(
                f"a parse worker did not start ({_exit_status(process.exitcode)}; its error went "
                "to stderr). A script that calls build() must call it under "
                "`if __name__ == '__main__':`, since the workers' fork server imports the script"
            )
        return worker if not self._closed else None

    def _ready(self, worker: _Worker) -> bool:
        """Whether the worker said it is ready within `parse_timeout_s` or `START_WAIT_S`,
        the longer; one that died says so at once."""
        if not worker.conn.poll(max(self._ingest.parse_timeout_s, START_WAIT_S)):
            return False
        try:
            return worker.conn.recv_bytes() == _READY
        except (EOFError, OSError):
            return False

    def _collect(self, done: dict[int, Parsed]) -> None:
        """Wait for the first busy worker to answer, die or pass its deadline; record them."""
        busy = [worker for worker in self._workers if worker.job is not None]
        if not busy:
            return
        first_deadline = min(worker.deadline for worker in busy)
        ready = wait([worker.conn for worker in busy], max(0.0, first_deadline - time.monotonic()))
        now = time.monotonic()
        for worker in busy:
            index = worker.job
            if worker.conn in ready:
                done[index] = self._receive(worker)
            elif now >= worker.deadline:
                done[index] = Parsed(None, self._took_too_long())
                self._stop(worker)

    def _receive(self, worker: _Worker) -> Parsed:
        try:
            reply = json.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            self._stop(worker, _EXIT_WAIT_S)
            return Parsed(None, self._crashed(worker.process.exitcode))
        worker.job = None
        if "memory" in reply:
            self._stop(worker)  # a fresh worker for the next file: this one's heap is spent
            return Parsed(None, self._needed_too_much())
        if "error" in reply:
            return Parsed(None, reply["error"])
        blocks = [TextBlock(text, page, section) for text, page, section in reply["blocks"]]
        return Parsed(LoadedDocument(reply["source"], blocks, reply["title"]))

    def _stop(self, worker: _Worker, wait_s: float = 0.0) -> None:
        """Kill the worker, after `wait_s` for it to end by itself (a worker whose pipe closed is
        ending, and its own exit status says why)."""
        worker.process.join(wait_s)
        worker.process.kill()
        worker.process.join()
        worker.conn.close()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)

    def _took_too_long(self) -> str:
        return (
            f"took longer than ingest.parse_timeout_s = {self._ingest.parse_timeout_s:g} s to "
            "parse; skipped (raise the setting for a file this slow)"
        )

    def _needed_too_much(self) -> str:
        return (
            f"needed more than ingest.parse_memory_mb = {self._ingest.parse_memory_mb:g} MB to "
            "parse; skipped (raise the setting for a file this large)"
        )

    def _crashed(self, exitcode: int) -> str:
        return (
            f"the parser crashed ({_exit_status(exitcode)}); skipped (if the file is large, "
            f"raise ingest.parse_memory_mb = {self._ingest.parse_memory_mb:g} MB)"
        )


def _exit_status(exitcode: int) -> str:
    if exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


# --- in the worker -------------------------------------------------------------------------------


def _serve(conn: Connection, load: Loader, ingest: IngestConfig, root: Path | None) -> None:
    """A worker's loop: read [path, source], answer with the document or the reason, as JSON."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _limit_memory(int(ingest.parse_memory_mb * _MB))
    limits = ingest.load_limits()
    conn.send_bytes(_READY)
    while True:
        try:
            path, source = json.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            reply = _parse_one(load, Path(path), source, ingest.max_bytes, limits, root)
            message = json.dumps(reply).encode()
        except MemoryError:
            message = b'{"memory": true}'
        conn.send_bytes(message)


def _parse_one(
    load: Loader, path: Path, source: str, max_bytes: int, limits: LoadLimits, root: Path | None
) -> dict:
    try:
        document = load(path, source, max_bytes, limits, root)
    except LoadError as error:
        return {"error": str(error)}
    except MemoryError:
        raise
    # A library choking on a strange file costs that file only.
    except Exception as error:
        return {"error": f"could not be read ({type(error).__name__}: {error})"}
    blocks = [[block.text, block.page, block.section] for block in document.blocks]
    return {"source": document.source, "title": document.title, "blocks": blocks}


def _die_with_parent() -> None:
    """Have the kernel kill this worker when the fork server that started it ends (Linux)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _limit_memory(extra_bytes: int) -> None:
    """Cap the address space at what this process maps now plus `extra_bytes` (Linux: other
    systems do not enforce RLIMIT_AS, and have no /proc to read the current size from)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return
    mapped = int(re.search(r"^VmSize:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

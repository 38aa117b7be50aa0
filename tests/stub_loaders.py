"""A loader that misbehaves on purpose, by file name, for the parse workers to contain.

Workers import their loader by name, so it lives in a module of its own rather than in a test;
tests put it in place of `builder.build.load_document` (or hand it to a `ParsePool`).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from retrieval.documents import LoadedDocument, LoadLimits
from retrieval.loaders import load_document


def load_or_misbehave(
    path: Path, source: str, max_bytes: int, limits: LoadLimits, root: Path | None
) -> LoadedDocument:
    """`load_document`, except for files named hang* (never returns; writes `.NAME.started`
    beside the file first), greedy* (asks for 64 GB) and crash* (dies of SIGSEGV)."""
    if path.name.startswith("hang"):
        path.with_name(f".{path.name}.started").touch()
        time.sleep(3600)
    if path.name.startswith("greedy"):
        bytearray(64 * 1024**3)
    if path.name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return load_document(path, source, max_bytes, limits, root)

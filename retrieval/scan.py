"""Find the documents under a folder (recursive, hidden files skipped, no escaping symlinks),
and open them for reading without trusting that the folder stayed as it was scanned.

A file can be swapped between the scan and the read: for a FIFO (the read would block the
build forever), a device, or a symlink to a file outside the folder. `open_regular` therefore
opens without following a final symlink and without blocking, and checks what it opened (the
descriptor, not the path): a regular file, inside the documents folder, within the size limit.

File names holding control characters (C0, DEL, C1, line and paragraph separators) or bidi
controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C) are refused: a right-to-left
override makes `invoice\u202efdp.exe` show as `invoiceexe.pdf` wherever the source is printed
(skips, citations, the app). The skip itself names the file with those characters escaped.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from retrieval.documents import LoadError

# O_NONBLOCK: opening a FIFO to read otherwise waits for a writer, forever. It changes nothing
# for the regular files that are then read.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_SEPARATORS = frozenset("\u2028\u2029")
_MB = 1024 * 1024


@dataclass(frozen=True)
class FoundFile:
    """A regular file under the documents folder."""

    source: str
    """Path relative to the documents folder, '/' separators."""
    path: Path
    size: int


@dataclass(frozen=True)
class ScanSkip:
    source: str
    reason: str


def scan_documents(
    docs_dir: Path, suffixes: tuple[str, ...]
) -> tuple[list[FoundFile], list[ScanSkip]]:
    """Walk `docs_dir` and return the files to index and those passed over.

    Hidden files and folders (name starting with '.') are ignored silently. Symlinks are followed
    only when they point inside `docs_dir`; symlinked folders are never descended (their target
    is either inside and walked anyway, or outside and off limits).

    Raises:
        FileNotFoundError: `docs_dir` is not a folder.
    """
    root = Path(docs_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"documents folder {docs_dir} does not exist or is not a folder")
    found: list[FoundFile] = []
    skipped: list[ScanSkip] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for dirname in dirnames:
            link = Path(folder) / dirname
            if link.is_symlink() and not _inside(link.resolve(), root):
                skipped.append(
                    ScanSkip(_source(link, root), "symlink points outside the documents folder")
                )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            source = _source(path, root)
            if not is_safe_name(source):
                skipped.append(
                    ScanSkip(
                        escape_name(source),
                        "the name holds control or bidi-override characters; rename the file",
                    )
                )
                continue
            if path.is_symlink():
                target = path.resolve()
                if not _inside(target, root):
                    skipped.append(ScanSkip(source, "symlink points outside the documents folder"))
                    continue
            if not path.is_file():
                skipped.append(ScanSkip(source, "not a regular file"))
                continue
            if path.suffix.lower() not in suffixes:
                skipped.append(
                    ScanSkip(
                        source,
                        f"unsupported file type {path.suffix or '(none)'!r} "
                        f"(supported: {', '.join(suffixes)})",
                    )
                )
                continue
            found.append(FoundFile(source, path, path.stat().st_size))
    found.sort(key=lambda f: f.source)
    return found, skipped


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _source(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _unsafe_char(char: str) -> bool:
    return char in _BIDI_CONTROLS or char in _SEPARATORS or unicodedata.category(char) == "Cc"


def is_safe_name(name: str) -> bool:
    """Whether `name` is free of control and bidi-control characters (see the module doc)."""
    return not any(_unsafe_char(char) for char in name)


def escape_name(name: str) -> str:
    """`name` with each control or bidi-control character written as an escape (\\u202e)."""
    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") if _unsafe_char(c) else c
        for c in name
    )


@contextmanager
def open_regular(
    path: Path, max_bytes: int | None = None, root: Path | None = None
) -> Iterator[BinaryIO]:
    """Open a document to read it, refusing what is not a regular file once opened.

    The path's symlinks are resolved first, so a link inside the folder to a file inside it
    still works; the resolved file is then opened without following a link (one put there
    since) and without blocking (a FIFO), and the opened descriptor is checked.

    Args:
        path: The file.
        max_bytes: Refuse a file larger than this, by its size, before reading anything.
        root: The documents folder; a file whose real path is outside it is refused.

    Raises:
        LoadError: a one-line reason: a FIFO, device or folder, a link out of the folder, a
            file over `max_bytes`, or the error of the operating system.
    """
    real = Path(os.path.realpath(path))
    real_root = Path(os.path.realpath(root)) if root is not None else None
    if real_root is not None and not _inside(real, real_root):
        raise LoadError("symlink points outside the documents folder")
    try:
        # lstat first: opening some devices has effects of its own.
        _check_regular(os.lstat(real).st_mode)
        descriptor = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LoadError(_BECAME_LINK) from exc
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        _check_regular(info.st_mode)
        opened = _descriptor_path(descriptor)
        if real_root is not None and opened is not None and not _inside(opened, real_root):
            raise LoadError("moved outside the documents folder after the scan")
        if max_bytes is not None and info.st_size > max_bytes:
            raise too_big(info.st_size, max_bytes)
        yield handle


_BECAME_LINK = "became a symbolic link after the scan; not followed"


def _check_regular(mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise LoadError(_BECAME_LINK)
    if stat.S_ISDIR(mode):
        raise LoadError(f"cannot read: {os.strerror(errno.EISDIR)}")
    if not stat.S_ISREG(mode):
        raise LoadError("not a regular file (a FIFO, socket or device); not read")


def _descriptor_path(descriptor: int) -> Path | None:
    """The real path of an open file, where the system tells it (Linux's /proc)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        return None


def read_regular_file(path: Path, max_bytes: int, root: Path | None = None) -> bytes:
    """The whole content of a document opened by `open_regular`.

    Raises:
        LoadError: see `open_regular`; also a file that grew past `max_bytes` while read.
    """
    with open_regular(path, max_bytes, root) as handle:
        try:
            # One byte past the limit notices a file that grew since fstat().
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise too_big(len(data), max_bytes)
    return data


def document_sha256(path: Path, max_bytes: int, root: Path | None = None) -> str:
    """The sha256 of a document opened by `open_regular`, read in pieces up to `max_bytes`.

    Raises:
        LoadError: see `open_regular`; also a file that grew past `max_bytes` while read.
    """
    digest = hashlib.sha256()
    seen = 0
    with open_regular(path, max_bytes, root) as handle:
        try:
            for block in iter(lambda: handle.read(1 << 20), b""):
                seen += len(block)
                if seen > max_bytes:
                    raise too_big(seen, max_bytes)
                digest.update(block)
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def too_big(size: int, max_bytes: int) -> LoadError:
    """The error for a file of `size` bytes over the `max_bytes` limit."""
    return LoadError(
        f"file is {_format_size(size)}, over the {_format_size(max_bytes)} limit "
        "(raise ingest.max_file_mb)"
    )


def _format_size(n_bytes: int) -> str:
    """Sizes in MB with one decimal; tiny sizes in bytes so they never print as '0.0 MB'."""
    if n_bytes < _MB // 10:
        return f"{n_bytes} bytes"
    return f"{n_bytes / _MB:.1f} MB"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

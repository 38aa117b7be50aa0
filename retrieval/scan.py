"""Find the documents under a folder: recursive, hidden files skipped, no escaping symlinks."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

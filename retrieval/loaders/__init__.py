"""Turn one file into a `LoadedDocument`: text blocks with their page and section.

Each supported format has its own module; they all take the file's bytes and return text
blocks, and raise `LoadError` with a one-line reason for anything that cannot be indexed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retrieval.documents import LoadedDocument, LoadError, TextBlock
from retrieval.loaders._docx import load_docx
from retrieval.loaders._html import load_html
from retrieval.loaders._markdown import load_markdown
from retrieval.loaders._pdf import load_pdf
from retrieval.loaders._text import load_txt

__all__ = ["SUPPORTED_SUFFIXES", "load_document"]

_LOADERS: dict[str, Callable[[bytes], list[TextBlock]]] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_txt,
}

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_LOADERS)

_MB = 1024 * 1024


def load_document(path: Path, source: str, max_bytes: int) -> LoadedDocument:
    """Load one file as text blocks in reading order.

    Args:
        path: The file to read; its suffix (case-insensitive) picks the format.
        source: The file's path relative to the documents folder, stored on the result.
        max_bytes: Files larger than this are refused without being read.

    Returns:
        The document with at least one non-empty block.

    Raises:
        LoadError: The file cannot be indexed; the message is a one-line reason that does not
            name the file (the caller adds it).
    """
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        raise LoadError(
            f"unsupported file type {shown} (supported: {', '.join(SUPPORTED_SUFFIXES)})"
        )
    blocks = loader(_read_bytes(path, max_bytes))
    if not blocks:
        raise LoadError("no text found")
    return LoadedDocument(source=source, blocks=blocks)


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """Read a whole file, refusing empty files and files over `max_bytes`."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big(size, max_bytes)
        # Read one byte past the limit to notice a file that grew since stat().
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise _too_big(len(data), max_bytes)
    if not data:
        raise LoadError("empty file")
    return data


def _too_big(size: int, max_bytes: int) -> LoadError:
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

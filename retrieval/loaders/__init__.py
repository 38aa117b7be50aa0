"""Turn one file into a `LoadedDocument`: text blocks with their page and section.

Each supported format has its own module; they all take the file's bytes and return text
blocks, and raise `LoadError` with a one-line reason for anything that cannot be indexed. The
formats that unpack (pdf pages, docx zip parts) also take the `LoadLimits` they must stay within.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retrieval.documents import LoadedDocument, LoadError, LoadLimits, TextBlock
from retrieval.loaders._docx import load_docx
from retrieval.loaders._html import load_html
from retrieval.loaders._markdown import load_markdown
from retrieval.loaders._pdf import load_pdf
from retrieval.loaders._text import load_txt, too_many_chars
from retrieval.scan import read_regular_file
from retrieval.titles import document_title

__all__ = ["SUPPORTED_SUFFIXES", "load_document"]

Loader = Callable[[bytes, LoadLimits], list[TextBlock]]


def _text_format(load: Callable[[bytes], list[TextBlock]]) -> Loader:
    """Text formats extract at most one character a byte: the file size limit bounds them."""
    return lambda data, _limits: load(data)


_LOADERS: dict[str, Loader] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".html": _text_format(load_html),
    ".htm": _text_format(load_html),
    ".md": _text_format(load_markdown),
    ".markdown": _text_format(load_markdown),
    ".txt": _text_format(load_txt),
}

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_LOADERS)


def load_document(
    path: Path,
    source: str,
    max_bytes: int,
    limits: LoadLimits | None = None,
    root: Path | None = None,
) -> LoadedDocument:
    """Load one file as text blocks in reading order.

    Args:
        path: The file to read; its suffix (case-insensitive) picks the format.
        source: The file's path relative to the documents folder, stored on the result.
        max_bytes: Files larger than this are refused without being read.
        limits: Pages and characters the file may hold, bytes a docx may unpack to (None:
            the defaults).
        root: The documents folder: a file whose real path is outside it is refused, as is
            anything that is not a regular file when it is opened (see `read_regular_file`).

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
    limits = limits or LoadLimits()
    data = read_regular_file(path, max_bytes, root)
    if not data:
        raise LoadError("empty file")
    blocks = loader(data, limits)
    if not blocks:
        raise LoadError("no text found")
    chars = sum(len(block.text) for block in blocks)
    if chars > limits.max_chars:
        raise too_many_chars(limits.max_chars)
    return LoadedDocument(source=source, blocks=blocks, title=document_title(source, blocks))

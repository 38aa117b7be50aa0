"""Shared text helpers (decoding, whitespace cleanup, block building) and the .txt loader."""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence

import charset_normalizer

from retrieval.documents import LoadError, TextBlock

BINARY_CONTENT = "binary content, not text (wrong file extension?)"

# UTF-32 comes first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SNIFF_BYTES = 8192
_BLANK_LINES = re.compile(r"\n{3,}")
MAX_SECTION_CHARS = 200
"""A section title is cut to this many characters: every chunk of the section carries it into
its indexed text and its prompt, so a hostile 1 MB heading must not be copied into each."""


def too_many_chars(max_chars: int) -> LoadError:
    """The error for a file whose text is longer than `ingest.max_chars`."""
    return LoadError(f"the text is over the {max_chars:,}-character limit (raise ingest.max_chars)")


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode a text file and normalize its newlines to '\\n'.

    Tries, in order: a Unicode BOM, strict UTF-8, the `declared` encoding (e.g. an HTML meta
    charset), cp1252 if the result looks like text, then charset detection.

    Args:
        data: The file's bytes.
        declared: An encoding named by the file itself, if any.

    Returns:
        The decoded text.

    Raises:
        LoadError: The bytes do not look like text.
    """
    text = _decode(data, declared)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes, declared: str | None) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise LoadError(BINARY_CONTENT) from exc
    # Text in any single-byte or UTF-8 encoding has no NUL bytes; BOM-less UTF-16 is not supported.
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise LoadError(BINARY_CONTENT)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # A page that declares UTF-16/32 but has no BOM and no NULs is not UTF-16/32 (as in HTML5).
    if declared and not declared.lower().replace("-", "").startswith(("utf16", "utf32")):
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
    # Detection alone is unreliable on short Western text (it picks cp437 or cp1006 for 'café'),
    # so cp1252, the usual legacy encoding, wins whenever it decodes to plausible text.
    for candidates in (["cp1252"], None):
        match = charset_normalizer.from_bytes(data, cp_isolation=candidates).best()
        if match is not None:
            return str(match)
    raise LoadError(BINARY_CONTENT)


def clean_block(text: str) -> str:
    """Strip trailing spaces on each line, keep at most one blank line in a row, strip the ends."""
    # str.rstrip, not a regex: `[^\S\n]+$` restarts at every blank of a run that does not end
    # its line, quadratic in the run's length (a 1 MB line of spaces took hours).
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def section_title(text: str) -> str | None:
    """A heading as a section title: whitespace squashed, cut to `MAX_SECTION_CHARS`."""
    return squash_spaces(text)[:MAX_SECTION_CHARS].rstrip() or None


def markdown_row(cells: Sequence[str]) -> str:
    """A table row as Markdown, '| a | b |', each '|' inside a cell escaped."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def markdown_separator(columns: int) -> str:
    """The line under a Markdown table's header row: '| --- | --- |'."""
    return "|" + " --- |" * max(columns, 1)


def squash_spaces(text: str) -> str:
    """Collapse every whitespace run (newlines included) into one space, and strip."""
    return " ".join(text.split())


class BlockBuilder:
    """Collects lines into blocks; each heading closes the current block and opens a new one.

    Args:
        section: The section of the lines that come before the first heading.
    """

    def __init__(self, section: str | None = None) -> None:
        self._blocks: list[TextBlock] = []
        self._lines: list[str] = []
        self._section = section

    def add_line(self, line: str) -> None:
        """Append one line to the current block."""
        self._lines.append(line)

    def start_section(self, title: str, heading: str) -> None:
        """Close the current block and open one under `title`, whose first line is `heading`."""
        self._flush()
        self._section = section_title(title)
        self._lines.append(heading)

    def finish(self) -> list[TextBlock]:
        """Close the current block and return all non-empty blocks."""
        self._flush()
        return self._blocks

    def _flush(self) -> None:
        text = clean_block("\n".join(self._lines))
        self._lines = []
        if text:
            self._blocks.append(TextBlock(text=text, section=self._section))


def load_txt(data: bytes) -> list[TextBlock]:
    """Load plain text: one block, or one per form-feed separated page.

    Args:
        data: The file's bytes.

    Returns:
        The non-empty blocks, without page or section.

    Raises:
        LoadError: The file is not text.
    """
    pieces = (clean_block(piece) for piece in decode_text(data).split("\f"))
    return [TextBlock(text=piece) for piece in pieces if piece]

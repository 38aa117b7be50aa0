"""Plain records passed between the retrieval stages: a loaded document and its chunks."""

from __future__ import annotations

from dataclasses import dataclass, field


class LoadError(Exception):
    """A file that cannot be indexed; the message is the one-line reason shown to the user."""


@dataclass(frozen=True)
class LoadLimits:
    """What one file may unpack to; a file past any limit is refused, with the setting to raise.

    The defaults are generous for real documents (a long annual filing has a few hundred pages
    and a few million characters) and bound what a hostile file can cost: a zip-bomb .docx, a
    PDF of a million empty pages, a page holding 100 million characters.

    Attributes:
        max_pages: Pages of a PDF.
        max_chars: Characters of text extracted from one file.
        max_unpacked_bytes: Bytes that the parts of a .docx (a zip archive) decompress to.
        pdf_tables: Load the tables found on PDF pages as Markdown tables
            (`ingest.pdf_tables`).
    """

    max_pages: int = 2000
    max_chars: int = 20_000_000
    max_unpacked_bytes: int = 200 * 1024 * 1024
    pdf_tables: bool = True


@dataclass(frozen=True)
class TextBlock:
    """A run of text that shares one page and one section heading.

    Attributes:
        text: The block's text, whitespace-normalized but otherwise as extracted.
        page: 1-based page number for paged formats (pdf), else None.
        section: The nearest heading above the block, else None.
    """

    text: str
    page: int | None = None
    section: str | None = None


@dataclass
class LoadedDocument:
    """A file turned into text blocks, in reading order.

    Attributes:
        source: Path relative to the documents folder, with '/' separators.
        blocks: Non-empty text blocks in reading order.
        title: The document's title (see `retrieval.titles.document_title`).
    """

    source: str
    blocks: list[TextBlock] = field(default_factory=list)
    title: str = ""

    BLOCK_SEPARATOR = "\n\n"

    @property
    def text(self) -> str:
        """The whole document: blocks joined by a blank line (chunk offsets index into this)."""
        return self.BLOCK_SEPARATOR.join(block.text for block in self.blocks)


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document.

    Attributes:
        chunk_id: Stable id: a hash of source, offset and text.
        source: Path relative to the documents folder.
        text: The chunk's text, exactly `document.text[start:end]`.
        start: Character offset of the chunk in `LoadedDocument.text`.
        end: Character offset one past the chunk's last character.
        page: 1-based page, or None.
        section: Section heading, or None.
        position: Index of the chunk within its document.
        title: Its document's title, or None.
        table_header: The header row (and '| --- |' line) of the Markdown table the chunk
            continues, when the chunk does not start with it; else None.
    """

    chunk_id: str
    source: str
    text: str
    start: int
    end: int
    page: int | None
    section: str | None
    position: int
    title: str | None = None
    table_header: str | None = None

"""PDF loader: one block per page with text, its section taken from the outline, its tables
as Markdown tables (`retrieval.loaders._pdf_tables`)."""

from __future__ import annotations

import re

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from retrieval.documents import LoadError, LoadLimits, TextBlock
from retrieval.loaders._pdf_tables import with_tables
from retrieval.loaders._text import clean_block, section_title, too_many_chars

NO_TEXT_LAYER = "no extractable text (scanned PDF? run OCR first)"

_HEADER_WINDOW = 1024  # Readers accept a %PDF- header anywhere in the first KiB.
_OPEN_REASONS = {
    pdfium_c.FPDF_ERR_FILE: "the file cannot be opened",
    pdfium_c.FPDF_ERR_FORMAT: "damaged file or not a PDF",
    pdfium_c.FPDF_ERR_PAGE: "page tree is damaged",
}
# PDFium can leave NULs and other C0 controls in extracted text; tab and newline are kept.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def load_pdf(data: bytes, limits: LoadLimits | None = None) -> list[TextBlock]:
    """Load a PDF's text layer, page by page.

    Args:
        data: The file's bytes.
        limits: The most pages, and characters of text, the file may have (None: defaults).

    Returns:
        One block per page with text; `page` is 1-based, `section` is the title of the last
        outline entry that starts on or before the page (None without an outline).

    Raises:
        LoadError: The file is not a PDF, is damaged or encrypted, has no text layer, or is
            over a limit.
    """
    limits = limits or LoadLimits()
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise LoadError("not a valid PDF: no %PDF header (wrong file extension?)")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise _open_error(exc) from exc
    try:
        pages = len(pdf)
        if pages > limits.max_pages:
            raise LoadError(
                f"the PDF has {pages:,} pages, over the {limits.max_pages:,}-page limit "
                "(raise ingest.max_pages)"
            )
        sections = _page_sections(pdf)
        blocks = []
        chars = 0
        for index, section in enumerate(sections):
            text, raw_chars = _page_text(pdf, index, limits.max_chars - chars, limits.pdf_tables)
            chars += raw_chars
            if chars > limits.max_chars:
                raise too_many_chars(limits.max_chars)
            if text:
                blocks.append(TextBlock(text=text, page=index + 1, section=section))
    finally:
        pdf.close()
    if not blocks:
        raise LoadError(NO_TEXT_LAYER)
    return blocks


def _open_error(exc: pdfium.PdfiumError) -> LoadError:
    """Turn PDFium's load failure into a reason the user can act on."""
    if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
        return LoadError("encrypted PDF (password required); decrypt it first")
    if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
        return LoadError("encrypted PDF (unsupported security scheme); decrypt it first")
    return LoadError(f"not a valid PDF: {_OPEN_REASONS.get(exc.err_code, 'unknown PDFium error')}")


def _page_sections(pdf: pdfium.PdfDocument) -> list[str | None]:
    """The section title of every page, from the outline (bookmarks)."""
    starts = []  # (page index, position in the outline, title)
    for position, bookmark in enumerate(pdf.get_toc()):
        title = section_title(bookmark.get_title())
        dest = bookmark.get_dest()
        page_index = dest.get_index() if dest is not None else None
        if title and page_index is not None:
            starts.append((page_index, position, title))
    # Sorted by page, then outline order: on a shared page the later (deeper) entry wins.
    starts.sort()
    sections: list[str | None] = []
    current = None
    next_start = 0
    for page_index in range(len(pdf)):
        while next_start < len(starts) and starts[next_start][0] <= page_index:
            current = starts[next_start][2]
            next_start += 1
        sections.append(current)
    return sections


def _page_text(
    pdf: pdfium.PdfDocument, index: int, max_chars: int, tables: bool
) -> tuple[str, int]:
    """The cleaned text of one page ('' when it has none), and how many characters PDFium
    counts on it (before whitespace is collapsed: that is what extracting it costs). With
    `tables`, each table found on the page is a Markdown table (`_pdf_tables.with_tables`).

    A page of more than `max_chars` characters is not copied out (its text comes back as ''),
    so a page of 100 million characters is counted, never built.

    Raises:
        LoadError: the page cannot be read.
    """
    page = textpage = None
    try:
        page = pdf[index]
        textpage = page.get_textpage()
        raw_chars = textpage.count_chars()
        if raw_chars > max_chars:
            return "", raw_chars  # the caller refuses the file
        raw = textpage.get_text_range()
        if tables:
            raw = with_tables(textpage, raw)
    except pdfium.PdfiumError as exc:
        raise LoadError(f"not a valid PDF: page {index + 1} cannot be read") from exc
    finally:
        if textpage is not None:
            textpage.close()
        if page is not None:
            page.close()
    text = _CONTROL_CHARS.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))
    return clean_block("\n".join(" ".join(line.split()) for line in text.split("\n"))), raw_chars

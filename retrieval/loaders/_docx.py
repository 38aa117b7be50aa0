"""Word (.docx) loader: paragraphs and tables in document order, one block per heading."""

from __future__ import annotations

import io
import zipfile

import docx
from docx.document import Document as DocxDocument
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table, _Cell
from lxml.etree import XMLSyntaxError

from retrieval.documents import LoadError, TextBlock
from retrieval.loaders._text import BlockBuilder

_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Old binary .doc (and .xls, .ppt) files.
_OPEN_ERRORS = (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError, XMLSyntaxError)


def load_docx(data: bytes) -> list[TextBlock]:
    """Load a .docx file; 'Heading N' and 'Title' paragraphs start sections.

    Table rows become lines with their cells joined by ' | '.

    Args:
        data: The file's bytes.

    Returns:
        The non-empty blocks; each starts with its heading and has it as `section`.

    Raises:
        LoadError: The file is not a readable .docx document.
    """
    document = _open(data)
    heading_ids = _heading_style_ids(document)
    builder = BlockBuilder()
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                builder.add_line(_row_line(row.cells))
        elif not item.text.strip():  # Empty paragraphs are only vertical spacing.
            continue
        # `Paragraph.style` resolves the style anew for every paragraph (slow on long
        # documents), so compare the paragraph's raw style id instead.
        elif item._p.style in heading_ids:
            builder.start_section(item.text, item.text)
        else:
            builder.add_line(item.text)
    return builder.finish()


def _open(data: bytes) -> DocxDocument:
    """Parse the package, turning python-docx's many failure types into one LoadError."""
    if data.startswith(_OLE2_MAGIC):
        raise LoadError("not a valid .docx file: it is an old binary Word file; save it as .docx")
    if not data.startswith(_ZIP_MAGIC):
        raise LoadError("not a valid .docx file: not a zip archive (wrong file extension?)")
    try:
        return docx.Document(io.BytesIO(data))
    except _OPEN_ERRORS as exc:
        # str(KeyError) wraps the message in quotes.
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise LoadError(f"not a valid .docx file: {reason}") from exc


def _heading_style_ids(document: DocxDocument) -> frozenset[str]:
    """Ids of the paragraph styles named 'Heading ...' or 'Title'."""
    return frozenset(
        style.style_id
        for style in document.styles
        if style.name and (style.name.startswith("Heading") or style.name == "Title")
    )


def _row_line(cells: tuple[_Cell, ...]) -> str:
    """One table row as 'a | b | c'; a cell spanning several columns is written once."""
    texts = []
    previous = None
    for cell in cells:
        if cell is not previous:
            text = " ".join(cell.text.split())
            if text:
                texts.append(text)
        previous = cell
    return " | ".join(texts)

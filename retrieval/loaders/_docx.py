"""Word (.docx) loader: paragraphs and tables in document order, one block per heading.

The archive is checked before python-docx reads any part whole: the sizes its parts declare,
then the bytes they actually decompress to, must stay within `LoadLimits.max_unpacked_bytes`
(a 1 GiB part of zeros compresses to 1 MB and would pass the file size limit).

Text is read from the XML directly rather than through `Paragraph.text` and `Row.cells`, which
are quadratic on hostile files: the first selects a run's parts with an XPath union that
libxml2 merges in quadratic time (32,000 tabs in one run took 6 s), the second walks up a
vertically merged column from every row, recursively (a RecursionError past ~1000 rows).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import docx
from docx.document import Document as DocxDocument
from docx.opc.exceptions import PackageNotFoundError
from docx.oxml.ns import qn
from docx.oxml.text.paragraph import CT_P
from docx.table import Table
from lxml.etree import XMLSyntaxError

from retrieval.documents import LoadError, LoadLimits, TextBlock
from retrieval.loaders._text import BlockBuilder, markdown_row, markdown_separator

_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Old binary .doc (and .xls, .ppt) files.
_MAX_PARTS = 10_000  # a Word file has tens of parts; each costs memory to list
_PIECE = 1 << 20
_MB = 1024 * 1024
_OPEN_ERRORS = (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError, XMLSyntaxError)
_RUN = qn("w:r")
_HYPERLINK = qn("w:hyperlink")
# The parts of a run that hold text; python-docx's element classes give each its text by str().
_RUN_TEXT = frozenset(qn(f"w:{name}") for name in ("br", "cr", "noBreakHyphen", "ptab", "t", "tab"))


def load_docx(data: bytes, limits: LoadLimits | None = None) -> list[TextBlock]:
    """Load a .docx file; 'Heading N' and 'Title' paragraphs start sections.

    Tables become Markdown tables, the first row as the header (as Word's table styles set
    it apart), so the chunker can repeat it above every chunk of the rows.

    Args:
        data: The file's bytes.
        limits: The bytes its parts may decompress to (None: the defaults).

    Returns:
        The non-empty blocks; each starts with its heading and has it as `section`.

    Raises:
        LoadError: The file is not a readable .docx document, or unpacks past the limit.
    """
    document = _open(data, limits or LoadLimits())
    heading_ids = _heading_style_ids(document)
    builder = BlockBuilder()
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for line in _table_lines(item):
                builder.add_line(line)
            continue
        text = _paragraph_text(item._p)
        if not text.strip():  # Empty paragraphs are only vertical spacing.
            continue
        # `Paragraph.style` resolves the style anew for every paragraph (slow on long
        # documents), so compare the paragraph's raw style id instead.
        if item._p.style in heading_ids:
            builder.start_section(text, text)
        else:
            builder.add_line(text)
    return builder.finish()


def _paragraph_text(p: CT_P) -> str:
    """The text of a `w:p` element, as `Paragraph.text` gives it: runs, also inside links."""
    parts = []
    for child in p:
        if child.tag == _RUN:
            runs = [child]
        elif child.tag == _HYPERLINK:
            runs = [run for run in child if run.tag == _RUN]
        else:
            continue
        parts.extend(str(part) for run in runs for part in run if part.tag in _RUN_TEXT)
    return "".join(parts)


def _open(data: bytes, limits: LoadLimits) -> DocxDocument:
    """Parse the package, turning python-docx's many failure types into one LoadError."""
    if data.startswith(_OLE2_MAGIC):
        raise LoadError("not a valid .docx file: it is an old binary Word file; save it as .docx")
    if not data.startswith(_ZIP_MAGIC):
        raise LoadError("not a valid .docx file: not a zip archive (wrong file extension?)")
    try:
        _check_unpacked_size(data, limits.max_unpacked_bytes)
        return docx.Document(io.BytesIO(data))
    except _OPEN_ERRORS as exc:
        # str(KeyError) wraps the message in quotes.
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise LoadError(f"not a valid .docx file: {reason}") from exc


def _check_unpacked_size(data: bytes, limit: int) -> None:
    """Refuse an archive whose parts unpack past `limit` bytes, first by the sizes it declares,
    then by decompressing each part in pieces and stopping as soon as the total passes it (a
    part that decompresses to more than it declares is refused the same way, never held).

    Raises:
        LoadError: over the limit, or too many parts.
        zipfile.BadZipFile: a damaged archive (a part that fails its checksum, too).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts = archive.infolist()
        if len(parts) > _MAX_PARTS:
            raise LoadError(f"the .docx has {len(parts):,} parts; a Word file has far fewer")
        declared = sum(part.file_size for part in parts)
        if declared > limit:
            raise _unpacks_past(limit, f"its parts declare {declared / _MB:,.1f} MB")
        unpacked = 0
        for part in parts:
            try:
                with archive.open(part) as stream:
                    while piece := stream.read(_PIECE):
                        unpacked += len(piece)
                        if unpacked > limit:
                            raise _unpacks_past(limit, "its parts decompress to more")
            # An encrypted part, or one compressed by a method zipfile lacks.
            except (RuntimeError, NotImplementedError) as exc:
                raise zipfile.BadZipFile(f"{part.filename}: {exc}") from exc


def _unpacks_past(limit: int, how: str) -> LoadError:
    return LoadError(
        f"the .docx unpacks past the {limit / _MB:,.1f} MB limit ({how}; a zip bomb?): "
        "raise ingest.max_unpacked_mb"
    )


def _heading_style_ids(document: DocxDocument) -> frozenset[str]:
    """Ids of the paragraph styles named 'Heading ...' or 'Title'."""
    return frozenset(
        style.style_id
        for style in document.styles
        if style.name and (style.name.startswith("Heading") or style.name == "Title")
    )


def _table_lines(table: Table) -> Iterator[str]:
    """The table as Markdown: rows without text left out, a '| --- |' line under the first."""
    header_done = False
    for cells in _row_cells(table):
        if not any(cells):
            continue
        yield markdown_row(cells)
        if not header_done:
            yield markdown_separator(len(cells))
            header_done = True


def _row_cells(table: Table) -> Iterator[list[str]]:
    """Each row's cell texts; a cell spanning several columns is written once, and a cell
    merged down over several rows is written in each of them."""
    above: dict[int, str] = {}  # the text of each cell of the row above, by its first column
    for tr in table._tbl.tr_lst:
        here: dict[int, str] = {}
        column = tr.grid_before
        for tc in tr.tc_lst:
            if tc.vMerge == "continue":  # the cell above goes on into this row
                here[column] = above.get(column, "")
            else:
                here[column] = " ".join(" ".join(_paragraph_text(p) for p in tc.p_lst).split())
            column += tc.grid_span
        above = here
        yield list(here.values())

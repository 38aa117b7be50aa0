"""Tables on a PDF page, found by their layout and written as Markdown tables.

A PDF holds no tables, only glyphs at positions. A table shows as rows of glyphs on one baseline
whose wide gaps line up down the page: a label on the left, then values in columns. The page's
glyphs are grouped into rows by baseline, each row is cut into cells at gaps wider than its
glyphs are tall, and a run of rows whose cells fall into two or more shared columns is a table.
The rows at its top that sit over the value columns only ("Three Months Ended", "December 31,",
"2022") are its header: each column's header is the words above it, a cell spanning several
columns heading each of them. Without such rows the first row is the header.

Each table is written as Markdown, header row first, in place of its text, so the chunker keeps
a row with the names of its columns (`retrieval.chunking.table_spans`), and the rows read across
the page whatever order the PDF drew them in.
"""

from __future__ import annotations

import bisect
import ctypes
import itertools
import statistics
import unicodedata
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from retrieval.loaders._text import markdown_row, markdown_separator

MAX_PAGE_CHARS = 50_000
"""Pages with more characters are left as text: a table page of a long filing has a few
thousand, and every character costs two PDFium calls here."""
MIN_ROWS = 3
"""Rows (header included) of a table, two of them with cells in two or more columns: fewer
aligned rows are as likely a form's label and value, or two words far apart."""
MAX_GAP_ROWS = 3
"""Single-cell rows (a subtotal's label, "Operating expenses:") a table may hold in a row."""
MAX_HEADER_ROWS = 4
MAX_CUTS = 8
"""Times a run is cut short at a line of prose before it is left as text: each cut costs a pass
over the run, and a page of alternating rows would cut it row by row."""
MAX_VALUE_CHARS = 32
"""A table's values (cells right of the labels) are numbers, dates, names: at most this long
by their median. Two columns of prose lines, far longer, are a page's text columns."""
CELL_GAP = 1.0
"""A gap wider than this many times a row's tallest glyph starts a new cell: words are set a
third of that apart, a table's columns several times it."""
WORD_GAP = 0.15
"""A gap wider than this many times a glyph's height sets it apart as a word of its own."""
BASELINE_TOLERANCE = 0.3
"""Glyphs whose baselines differ by less than this share of their height are on one row."""
# Cells made only of these belong with their neighbour: '$' and '(' open the value on their
# right, ')' and '%' close the one on their left. A dash stays alone: it is a value (nil).
_OPENING = frozenset({"Sc", "Ps", "Pi"})
_CLOSING = frozenset({"Pe", "Pf", "Po"})


@dataclass(frozen=True)
class _Glyph:
    index: int
    left: float
    right: float
    height: float
    baseline: float


@dataclass
class _Cell:
    left: float
    right: float
    indices: list[int]
    text: str


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    indices: list[int]


def with_tables(textpage: pdfium.PdfTextPage, text: str) -> str:
    """`text` (the page's text, one character per PDFium character) with each table on the
    page in place of its characters, as a Markdown table on lines of its own.

    Args:
        textpage: The page's text layer.
        text: `textpage.get_text_range()`, not yet cleaned.

    Returns:
        The text unchanged when the page has no table, or is over `MAX_PAGE_CHARS`, or its text
        does not match the character count (characters beyond the Basic Multilingual Plane
        come back as two).
    """
    if len(text) > MAX_PAGE_CHARS or len(text) != textpage.count_chars():
        return text
    glyphs = _glyphs(textpage, text)
    if not glyphs:
        return text
    spaces = [0]  # spaces[i]: whitespace characters before index i
    for char in text:
        spaces.append(spaces[-1] + char.isspace())
    rows = [_cells(row, text, spaces) for row in _rows(glyphs)]
    return _replace(text, _tables(rows))


def _glyphs(textpage: pdfium.PdfTextPage, text: str) -> list[_Glyph]:
    """The page's visible characters with their boxes and baselines."""
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    x, y = ctypes.c_double(), ctypes.c_double()
    glyphs = []
    for index, char in enumerate(text):
        if char.isspace():
            continue
        if not pdfium_c.FPDFText_GetCharBox(textpage.raw, index, left, right, bottom, top):
            continue
        if not pdfium_c.FPDFText_GetCharOrigin(textpage.raw, index, x, y):
            continue
        height = top.value - bottom.value
        if height <= 0 or right.value < left.value:
            continue
        glyphs.append(_Glyph(index, left.value, right.value, height, y.value))
    return glyphs


def _rows(glyphs: list[_Glyph]) -> list[list[_Glyph]]:
    """Glyphs grouped by baseline, top row first, each row left to right."""
    rows: list[list[_Glyph]] = []
    baseline = tallest = 0.0
    for glyph in sorted(glyphs, key=lambda g: -g.baseline):
        tolerance = BASELINE_TOLERANCE * max(tallest, glyph.height)
        if rows and baseline - glyph.baseline <= tolerance:
            rows[-1].append(glyph)
            tallest = max(tallest, glyph.height)
        else:
            rows.append([glyph])
            baseline, tallest = glyph.baseline, glyph.height
    return [sorted(row, key=lambda g: g.left) for row in rows]


def _cells(row: list[_Glyph], text: str, spaces: list[int]) -> list[_Cell]:
    """A row cut at its wide gaps, cells of punctuation alone joined to their value."""
    gap = CELL_GAP * max(glyph.height for glyph in row)
    groups = [[row[0]]]
    for before, glyph in itertools.pairwise(row):
        if glyph.left - before.right > gap:
            groups.append([glyph])
        else:
            groups[-1].append(glyph)
    for group, after in itertools.pairwise(groups):
        # A '$' set apart at the end of a cell opens the next value ("16,517 $ | 20,779").
        while (
            len(group) > 1
            and unicodedata.category(text[group[-1].index]) in _OPENING
            and group[-1].left - group[-2].right > WORD_GAP * group[-1].height
        ):
            after.insert(0, group.pop())
    cells = [_cell(group, text, spaces) for group in groups]
    joined: list[_Cell] = []
    pending: _Cell | None = None  # an opening symbol waiting for its value
    for cell in cells:
        kind = _symbol_kind(cell.text)
        if pending is not None:
            cell = _join(pending, cell, text, spaces)
            pending = None
        elif kind in _OPENING:
            pending = cell
            continue
        elif kind in _CLOSING and joined:
            joined[-1] = _join(joined[-1], cell, text, spaces)
            continue
        joined.append(cell)
    if pending is not None:
        joined.append(pending)
    return joined


def _symbol_kind(text: str) -> str | None:
    """The Unicode category of a cell made of one kind of punctuation or currency sign only."""
    kinds = {unicodedata.category(char) for char in text if not char.isspace()}
    return next(iter(kinds)) if len(kinds) == 1 and not kinds & {"Lu", "Ll", "Nd"} else None


def _cell(glyphs: list[_Glyph], text: str, spaces: list[int]) -> _Cell:
    indices = sorted(glyph.index for glyph in glyphs)
    return _Cell(
        left=min(glyph.left for glyph in glyphs),
        right=max(glyph.right for glyph in glyphs),
        indices=indices,
        text=_text_of(indices, text, spaces),
    )


def _join(first: _Cell, second: _Cell, text: str, spaces: list[int]) -> _Cell:
    indices = sorted(first.indices + second.indices)
    left, right = min(first.left, second.left), max(first.right, second.right)
    return _Cell(left, right, indices, _text_of(indices, text, spaces))


def _text_of(indices: list[int], text: str, spaces: list[int]) -> str:
    """The characters at `indices`, in text order, a space where the text has one between."""
    parts = [text[indices[0]]]
    for before, index in itertools.pairwise(indices):
        if spaces[index] - spaces[before + 1] > 0:
            parts.append(" ")
        parts.append(text[index])
    return "".join(parts)


def _tables(rows: list[list[_Cell]]) -> list[_Table]:
    """The tables among a page's rows, top to bottom."""
    tables = []
    start = 0  # rows before it belong to a table already, or to none
    i = 0
    while i < len(rows):
        if len(rows[i]) < 2:
            i += 1
            continue
        end = _run_end(rows, i)
        table, resume = _table(rows, start, i, end)
        if table is not None:
            tables.append(table)
            start = resume
        i = resume
    return tables


def _run_end(rows: list[list[_Cell]], first: int) -> int:
    """One past the last multi-cell row of the run that starts at `first`, where at most
    `MAX_GAP_ROWS` single-cell rows come between two multi-cell ones."""
    last = first
    for i in range(first + 1, len(rows)):
        if len(rows[i]) >= 2:
            last = i
        elif i - last > MAX_GAP_ROWS:
            break
    return last + 1


def _table(rows: list[list[_Cell]], free: int, first: int, end: int) -> tuple[_Table | None, int]:
    """The table of the run rows[first:end], if it is one, and where to look on from.

    The run is cut short at a single-cell row that crosses two columns (a line of prose); rows
    from `free` up to `first` may be its header.
    """
    for _ in range(MAX_CUTS + 1):
        multi = [row for row in rows[first:end] if len(row) >= 2]
        if len(multi) < 2:
            return None, end
        split = min(row[1].left for row in multi)  # where the values start
        labelled = [i for i in range(first, end) if rows[i][0].left < split]
        columns = _columns([rows[i] for i in labelled if len(rows[i]) >= 2])
        if len(labelled) < 2 or len(columns) < 2 or columns[0][0] >= split:
            return None, end
        crossing = next(
            (
                i
                for i in range(first, end)
                if len(rows[i]) == 1 and len(_overlapped(rows[i][0], columns)) > 1
            ),
            None,
        )
        if crossing is None:
            break
        end = crossing
    else:
        return None, end
    values = [cell.text for i in labelled for cell in rows[i] if _overlapped(cell, columns)[0] > 0]
    if not values or statistics.median(len(value) for value in values) > MAX_VALUE_CHARS:
        return None, end
    body_start = _header_end(rows, first, end, split, columns)
    head_start = first
    # Rows above the run that sit over the values (nearer them than the labels) head it too.
    over_values = (columns[0][1] + split) / 2
    while (
        head_start > free
        and first - head_start < MAX_HEADER_ROWS
        and all(cell.left >= over_values for cell in rows[head_start - 1])
    ):
        head_start -= 1
    if end - head_start < MIN_ROWS:
        return None, end
    if head_start == body_start:  # no header rows: the first row names the columns
        body_start += 1
    header = [[] for _ in columns]
    for row in rows[head_start:body_start]:
        for cell in row:
            for column in _overlapped(cell, columns):
                header[column].append(cell.text)
    table_rows = []
    for row in rows[body_start:end]:
        texts: list[list[str]] = [[] for _ in columns]
        for cell in row:
            texts[_overlapped(cell, columns)[0]].append(cell.text)
        table_rows.append([" ".join(parts) for parts in texts])
    indices = [index for row in rows[head_start:end] for cell in row for index in cell.indices]
    return _Table([" ".join(parts) for parts in header], table_rows, indices), end


def _header_end(rows: list[list[_Cell]], first: int, end: int, split: float, columns: list) -> int:
    """Where the body of the run rows[first:end] starts: after its last row without a label
    ("2022  2021") among its first `MAX_HEADER_ROWS`, before any row with a cell in every
    column; the run's first row when there is none (the header is above it, or is its first
    row)."""
    body = first
    for i in range(first, min(end, first + MAX_HEADER_ROWS)):
        row = rows[i]
        if row[0].left >= split:
            body = i + 1
        elif len({c for cell in row for c in _overlapped(cell, columns)}) == len(columns):
            break
    return body


def _columns(rows: list[list[_Cell]]) -> list[tuple[float, float]]:
    """The x-ranges that the rows' cells cover, overlapping cells merged: the columns."""
    spans = sorted((cell.left, cell.right) for row in rows for cell in row)
    columns: list[tuple[float, float]] = []
    for left, right in spans:
        if columns and left <= columns[-1][1]:
            columns[-1] = (columns[-1][0], max(columns[-1][1], right))
        else:
            columns.append((left, right))
    return columns


def _overlapped(cell: _Cell, columns: list[tuple[float, float]]) -> list[int]:
    """The columns a cell overlaps, left to right; one that overlaps none: the nearest."""
    hit = [
        i for i, (left, right) in enumerate(columns) if cell.left <= right and cell.right >= left
    ]
    if hit:
        return hit
    middle = (cell.left + cell.right) / 2
    lefts = [left for left, _ in columns]
    at = max(0, bisect.bisect_right(lefts, middle) - 1)
    candidates = [c for c in (at, at + 1) if c < len(columns)]
    return [min(candidates, key=lambda c: abs(sum(columns[c]) / 2 - middle))]


def _replace(text: str, tables: list[_Table]) -> str:
    """The text with each table's characters replaced by its Markdown, on lines of its own.

    A character between a table's first and last one that is not the table's (text the PDF
    drew in between) follows the table. A table whose characters interleave with an earlier
    one's is left as text.
    """
    out = []
    cursor = 0
    for table in sorted(tables, key=lambda t: min(t.indices)):
        low, high = min(table.indices), max(table.indices)
        if low < cursor:
            continue
        own = set(table.indices)
        rest = "".join(text[i] for i in range(low, high + 1) if i not in own).strip()
        lines = [markdown_row(table.header), markdown_separator(len(table.header))]
        lines += [markdown_row(row) for row in table.rows]
        out += [text[cursor:low], "\n", "\n".join(lines), "\n"]
        if rest:
            out += [rest, "\n"]
        cursor = high + 1
    out.append(text[cursor:])
    return "".join(out)

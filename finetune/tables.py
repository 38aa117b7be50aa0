"""What a table's layout says about its cells, read from Unicode categories and digits alone (any
language): which cells are values, which first rows are data rather than column names, which
columns are a table of contents' page numbers, which cells hold several values at once.

PDF tables come out of the page as Markdown whose first row is always the header, and a
statement's columns are often merged into one cell ('$ 2,771 $ 1,747' for two quarters): a row
read as 'label | value' then asks about the wrong thing ('What is the $ 50 for total?') or
answers with two numbers where one was asked for.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from itertools import pairwise

from finetune.text import letter_count

_DASHES = {"-", "\u2013", "\u2014", "\u2212"}
"""A lone dash in a value column is a nil value ('—')."""
_GROUPED = re.compile(r"\d[,.]\d{3}(?!\d)")
"""Thousands written with a separator ('2,771', '1.084'): then a blank separates two values."""
MIN_PAGE_NUMBERS = 3


def is_value(cell: str) -> bool:
    """A number, amount, percentage or identifier: digits and no letters ('$ 50', '(41)',
    '12.5%', '94-2404110'); a lone dash is a nil value."""
    cell = cell.strip()
    if cell in _DASHES:
        return True
    return any(char.isdigit() for char in cell) and letter_count(cell) == 0


def header_is_data(cells: Sequence[str]) -> bool:
    """A row above '| --- |' that holds a value is the table's first data row, not the names of
    its columns: a converter that always makes the first row the header wrote it there."""
    return any(is_value(cell) for cell in cells if cell.strip())


def value_count(cell: str, grouped_thousands: bool) -> int:
    """How many values a cell without letters holds: '$ 2,771 $ 1,747' two, '— (2) — (2)' four,
    '$ 50' one. Where the text never groups thousands with a comma or point, '9 000' is one
    value written with a blank between its thousands (`grouped_thousands` False)."""
    if letter_count(cell) > 0:
        return 1
    tokens = [
        token for token in cell.split() if any(c.isdigit() for c in token) or token in _DASHES
    ]
    if len(tokens) > 1 and not grouped_thousands:
        first, rest = tokens[0].strip("$€£¥(+"), tokens[1:]
        if re.fullmatch(r"\d{1,3}", first) and all(re.fullmatch(r"\d{3}\D?", t) for t in rest):
            return 1
    return len(tokens)


def groups_thousands(text: str) -> bool:
    """Whether `text` writes thousands with a separator ('2,771'): see `value_count`."""
    return bool(_GROUPED.search(text))


def page_number_column(rows: Sequence[Sequence[str]]) -> bool:
    """Whether a table's last column is a table of contents' page numbers: at least
    `MIN_PAGE_NUMBERS` whole numbers beside labels with letters, never decreasing down the
    table. A statement's figures beside their labels go up and down."""
    numbers = []
    for cells in rows:
        if len(cells) < 2:
            continue
        value = cells[-1].strip()
        if re.fullmatch(r"\d{1,4}", value) and letter_count(" ".join(cells[:-1])) > 0:
            numbers.append(int(value))
    return len(numbers) >= MIN_PAGE_NUMBERS and all(a <= b for a, b in pairwise(numbers))


def merged_label(label: str) -> bool:
    """A row label that holds two values or more ('Mac 7,735 10,852'): the converter merged the
    label's cell with the figures beside it."""
    return sum(is_value(token) for token in label.split()) >= 2


def balanced(cell: str) -> bool:
    """Whether every bracket the cell opens it closes, and the other way round: a cell that
    fails was cut where its text wrapped onto the next row."""
    depth = 0
    for char in cell:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def caption(cell: str) -> bool:
    """A cell of words that opens with a bracket ('(Zip Code)', '(In millions)'): a form's
    caption or a table's unit line, not a label or a value ('(41)' is a negative amount)."""
    cell = cell.strip()
    return bool(cell) and unicodedata.category(cell[0]) == "Ps" and letter_count(cell) > 0

"""Tests for retrieval.loaders._pdf_tables: tables on generated PDF pages load as Markdown tables
whose header every chunk of their rows carries."""

from __future__ import annotations

import time
from pathlib import Path

from fpdf import FPDF

from retrieval.chunking import chunk_document, make_splitter, table_spans
from retrieval.documents import LoadLimits
from retrieval.loaders import load_document

HEADER = "| Region | Product | Units | Revenue |\n| --- | --- | --- | --- |"


def _count_words(text: str) -> int:
    return len(text.split())


def _load(pdf: FPDF, tmp_path: Path, tables: bool = True):
    path = tmp_path / "report.pdf"
    path.write_bytes(bytes(pdf.output()))
    return load_document(path, path.name, 1 << 26, LoadLimits(pdf_tables=tables))


def _sales_table(rows: int = 30) -> FPDF:
    """A page: a paragraph, a bordered table with a heading row, a paragraph."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=9)
    pdf.multi_cell(0, 5, "Quarterly sales by region. The table lists units and revenue.")
    pdf.ln(2)
    with pdf.table(first_row_as_headings=True) as table:
        for cells in [("Region", "Product", "Units", "Revenue")] + [
            (f"Region {i}", f"Widget {i % 3}", str(10 * i), f"{1000 + 37 * i:,}")
            for i in range(1, rows + 1)
        ]:
            row = table.row()
            for cell in cells:
                row.cell(cell)
    pdf.ln(2)
    pdf.multi_cell(0, 5, "Revenue is in thousands of dollars.")
    return pdf


def test_a_table_spanning_several_chunks_gives_each_chunk_its_header(tmp_path: Path) -> None:
    document = _load(_sales_table(), tmp_path)
    [block] = document.blocks
    assert block.text.startswith("Quarterly sales by region.")
    assert f"{HEADER}\n| Region 1 | Widget 1 | 10 | 1,037 |\n" in block.text
    assert "| Region 30 | Widget 0 | 300 | 2,110 |\n\nRevenue is in thousands" in block.text
    [span] = table_spans(block.text)
    assert span.header == HEADER

    chunks = chunk_document(document, make_splitter(_count_words, 24, 0))
    rows = [c for c in chunks if "| Region " in c.text and "| Region | Product" not in c.text]
    assert len(rows) >= 2  # the rows span more than one chunk beside the header's own
    assert all(c.table_header == HEADER for c in rows)
    assert all(document.text[c.start : c.end] == c.text for c in chunks)


def test_header_rows_over_the_values_name_each_column(tmp_path: Path) -> None:
    """A statement's layout: a heading spanning two columns, dates under it, labels on the left
    alone, currency signs set apart from their numbers."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=9)
    pdf.text(20, 20, "STATEMENTS OF OPERATIONS")
    pdf.text(120, 30, "Three Months Ended")
    pdf.text(110, 35, "March 31, 2024")
    pdf.text(145, 35, "March 31, 2023")
    lines = [
        ("Net sales:", None, None),
        ("Products", "$ 9,638", "$ 10,442"),
        ("Services", "2,076", "1,951"),
        ("Total net sales", "11,714", "12,393"),
        ("Net income", "$ (399)", "$ 3,463"),
    ]
    for i, (label, now, before) in enumerate(lines):
        y = 45 + 6 * i
        pdf.text(20, y, label)
        for x, value in ((110, now), (145, before)):
            if value:
                *sign, number = value.split(" ")
                if sign:
                    pdf.text(x, y, sign[0])
                pdf.text(x + 22 - pdf.get_string_width(number), y, number)  # right-aligned
    pdf.text(20, 85, "See the notes to the statements.")
    [block] = _load(pdf, tmp_path).blocks
    assert block.text == (
        "STATEMENTS OF OPERATIONS\n\n"
        "| | Three Months Ended March 31, 2024 | Three Months Ended March 31, 2023 |\n"
        "| --- | --- | --- |\n"
        "| Net sales: | | |\n"
        "| Products | $ 9,638 | $ 10,442 |\n"
        "| Services | 2,076 | 1,951 |\n"
        "| Total net sales | 11,714 | 12,393 |\n"
        "| Net income | $ (399) | $ 3,463 |\n\n"
        "See the notes to the statements."
    )


def test_rows_read_across_the_page_whatever_order_the_pdf_draws_them(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=10)
    names, prices = ["Name", "Bolt", "Nut", "Washer"], ["Price", "0.10", "0.05", "0.02"]
    for column, x in ((names, 20), (prices, 90)):  # one column, then the other
        for i, text in enumerate(column):
            pdf.text(x, 20 + 7 * i, text)
    [block] = _load(pdf, tmp_path).blocks
    assert block.text == (
        "| Name | Price |\n| --- | --- |\n| Bolt | 0.10 |\n| Nut | 0.05 |\n| Washer | 0.02 |"
    )


def test_prose_and_text_columns_stay_text(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=10)
    sentence = "The committee met twice and reviewed the budget for the coming year. "
    pdf.multi_cell(0, 5, sentence * 8)
    left, right = "the left column of an article goes on", "while the right column says more"
    for i in range(12):  # two columns of prose lines, side by side
        pdf.text(20, 100 + 5 * i, f"{left} {i}")
        pdf.text(110, 100 + 5 * i, f"{right} {i}")
    [block] = _load(pdf, tmp_path).blocks
    assert "|" not in block.text
    assert f"{left} 3 {right} 3" in block.text


def test_with_pdf_tables_off_a_table_is_its_plain_text(tmp_path: Path) -> None:
    [block] = _load(_sales_table(rows=3), tmp_path, tables=False).blocks
    assert "|" not in block.text
    assert "Region 1 Widget 1 10 1,037" in block.text


def test_a_page_packed_with_aligned_cells_loads_in_seconds(tmp_path: Path) -> None:
    """A hostile page (under `MAX_PAGE_CHARS`): 4,000 cells in a grid, every other row a line
    across the columns."""
    pdf = FPDF(format=(2000, 2000))
    pdf.add_page()
    pdf.set_font("helvetica", size=2)
    for row in range(200):
        y = 5 + 3 * row
        if row % 2:
            pdf.text(5, y, "a line of prose across the columns " * 4)
        else:
            for column in range(40):
                pdf.text(5 + 45 * column, y, f"{row}.{column}")
    started = time.perf_counter()
    [block] = _load(pdf, tmp_path).blocks
    assert "| --- |" in block.text  # under MAX_PAGE_CHARS: the page was read for tables
    assert time.perf_counter() - started < 10

"""Structural pairs from tables as PDF converters write them: a data row made the header, a
table of contents, merged columns, captions, look-alike documents."""

from __future__ import annotations

import pytest

from finetune.generators import structural
from finetune.rule_questions import questions_from_chunk, rule_pairs
from finetune.synthesis_config import SynthesisConfig
from finetune.tables import (
    balanced,
    caption,
    header_is_data,
    merged_label,
    page_number_column,
    value_count,
)
from retrieval.documents import Chunk


def chunk(text, source="filings/report.pdf", chunk_id="c1", position=0, table_header=None):
    return Chunk(chunk_id, source, text, 0, len(text), 1, None, position, table_header=table_header)


def asked(pairs) -> dict[str, str]:
    return {pair.question: pair.answer for pair in pairs}


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["2024 (excluding first quarter)", "$ 178"], True),
        (["California", "94-2404110"], True),
        (["Product", "Warranty period"], False),
        (["", "October 30, 2022"], False),
    ],
)
def test_a_header_row_that_holds_a_value_is_data(cells, expected):
    assert header_is_data(cells) is expected


@pytest.mark.parametrize(
    ("cell", "grouped", "count"),
    [
        ("$ 2,771 $ 1,747", True, 2),
        ("— (2) — (2)", True, 4),
        ("$ 50", True, 1),
        ("(41)", True, 1),
        ("9 000", False, 1),  # thousands grouped by a blank where nothing uses a comma
        ("393 409", True, 2),
        ("24 months", True, 1),
    ],
)
def test_value_count(cell, grouped, count):
    assert value_count(cell, grouped) == count


def test_page_numbers_rise_down_a_table_of_contents_and_figures_do_not():
    contents = [["Forward-Looking Statements", "1"], ["A Quarter in Review", "2"], ["Notes", ""]]
    contents.append(["Exhibits", "42"])
    figures = [["2025", "188"], ["Total", "1,084"], ["Less imputed interest", "130"]]
    leases = [["Rent", "188"], ["Parking", "167"], ["Storage", "149"]]
    assert page_number_column(contents)
    assert not page_number_column(figures)
    assert not page_number_column(leases)
    assert not page_number_column(contents[:2])


def test_labels_and_captions():
    assert merged_label("Mac 7,735 10,852")
    assert not merged_label("Due in 1\u20132 years")
    assert caption("(In millions)") and not caption("(41)") and not caption("Zip Code")
    assert balanced("Net (gains) losses") and not balanced("incorporation or organization)")


def test_a_pdf_table_whose_first_row_is_data_is_not_asked_by_that_row():
    text = (
        "| 2024 (excluding first quarter) | $ 178 |\n| --- | --- |\n| 2025 | 218 |\n"
        "| Less imputed interest | 162 |"
    )
    assert asked(questions_from_chunk(chunk(text))) == {"What is the less imputed interest?": "162"}


def test_a_table_of_contents_gives_no_pairs():
    text = (
        "| | Page |\n| --- | --- |\n| Forward-Looking Statements | 1 |\n"
        "| A Quarter in Review | 2 |\n| Exhibits | 42 |"
    )
    assert questions_from_chunk(chunk(text)) == []


def test_merged_columns_captions_and_cut_cells_give_no_pairs():
    text = (
        "| Prepaid supply agreements | $ 2,771 $ 1,747 |\n| --- | --- |\n"
        "| Prepaid royalties | 393 409 |\n| (Address of principal offices) | (Zip Code) |\n"
        "| incorporation or organization) | Identification No.) |"
    )
    assert questions_from_chunk(chunk(text)) == []


def test_a_chunk_inside_a_table_reads_its_rows_under_the_tables_header():
    header = "| Country | Per diem per full day |\n| --- | --- |"
    text = "| United Kingdom | €64 |\n| Rest of the world | €72 |"
    pairs = questions_from_chunk(chunk(text, table_header=header))
    assert asked(pairs)["What is the per diem per full day for rest of the world?"] == "€72"


def test_a_question_asked_twice_with_different_answers_is_dropped():
    first = chunk("Total: 1,084 units", chunk_id="c1", position=0)
    second = chunk("Total: 9,772 units", chunk_id="c2", position=1)
    other = chunk("Commission File Number: 0-23985", chunk_id="c3", position=2)
    assert asked(rule_pairs([first, second, other])) == {
        "What is the Commission File Number?": "0-23985"
    }


def test_an_identifier_that_several_file_names_share_is_not_a_product():
    text = "Revenue: 6,704 dollars"
    filings = [
        chunk(text, source=f"2023 Q2 {ticker}.pdf", chunk_id=ticker) for ticker in ("NVDA", "AAPL")
    ]
    manual = chunk("Maximum speed: 15,000 rpm", source="merlin-mx30-manual.md", chunk_id="m")
    pairs = structural.generate([*filings, manual], SynthesisConfig())
    questions = sorted(pair.question for pair in pairs)
    assert questions == [
        "2023 Q2 AAPL: What is the revenue?",
        "2023 Q2 NVDA: What is the revenue?",
        "merlin mx30 manual: What is the maximum speed of the MX30?",
    ]

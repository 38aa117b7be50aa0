"""Keyword terms: codes whole and in parts, numbers without separators, no word list."""

import pytest

from retrieval.keyword_index import KeywordIndex
from retrieval.keyword_terms import terms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MX-30", ["mx-30", "mx30", "mx", "30"]),
        ("R-24A", ["r-24a", "r24a", "24a", "24"]),
        ("10-K", ["10-k", "10k", "10"]),
        ("FY2022", ["fy2022", "fy", "2022"]),
        ("9,000 runs", ["9000", "run"]),
        ("$1,234,567.50", ["1234567.50", "1234567", "50"]),
        ("12% of 4.5", ["12", "of", "4.5"]),
        ("U.S.", ["u.s", "us"]),
        ("1,2,3", []),  # a list, not a number; lone digits say little
    ],
)
def test_terms(text, expected):
    assert terms(text) == expected


def test_the_same_code_written_three_ways_shares_its_terms():
    assert {"mx30", "mx", "30"} <= set(terms("MX-30")) & set(terms("mx30"))
    assert {"mx", "30"} <= set(terms("MX 30"))


def test_bm25_tells_mx30_from_mx60_and_matches_numbers_however_written():
    index = KeywordIndex.build(
        [
            "The MX-60 rotor is retired after 12,000 runs.",
            "The MX-30 rotor is retired after 9,000 runs.",
        ]
    )
    assert index.search(["How many runs before the mx30 rotor is retired?"], 2)[0][0][0] == 1
    assert index.search(["Which rotor lasts 9000 runs?"], 2)[0][0][0] == 1
    assert index.search(["Which rotor lasts 12000 runs?"], 2)[0][0][0] == 0


def test_texts_without_a_term_give_an_index_that_saves_loads_and_finds_nothing(tmp_path):
    # Documents with no titles at all (a folder of untitled text files) index their titles so.
    index = KeywordIndex.build(["", "", "1,2,3"])
    index.use_document_frequencies({"rotor": 3})
    index.save(tmp_path / "titles")
    loaded = KeywordIndex.load(tmp_path / "titles")
    assert loaded.size == 0
    assert loaded.search(["rotor"], 5) == [[]]

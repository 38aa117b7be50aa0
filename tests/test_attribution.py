"""Verified attribution on hand-made answers: claims split in any script, facts that must match,
citations moved to the chunk that supports a claim, markup removed, linear-time text handling."""

import time

import numpy as np
import pytest

from retrieval.attribution import (
    TermStatistics,
    candidate_sentences,
    cited_numbers,
    render,
    split_claims,
    strip_prompt_markup,
    verify_claims,
    with_markers,
)
from retrieval.text_units import facts_of, words_of

MX30 = "The R-24A rotor of the MX-30 must be retired after 9,000 runs or 10 years."
MX60 = "The R-30F rotor of the MX-60 must be retired after 12,000 runs or 10 years."
GASKET = "Clean the lid gasket weekly with warm water and mild soap."
CHUNKS = [MX30, MX60, GASKET]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two years [1]. Three days [2].", [("Two years.", [1]), ("Three days.", [2])]),
        ("Two years. [1] Three days.", [("Two years.", [1]), ("Three days.", [])]),
        ("e.g. the rotor is 2.5 mm wide [3].", [("e.g. the rotor is 2.5 mm wide.", [3])]),
        (
            "ローターは9000回で交換します。次に清掃します。",
            [("ローターは9000回で交換します。", []), ("次に清掃します。", [])],
        ),
        ("Erst A [1]! Dann B? Ende", [("Erst A!", [1]), ("Dann B?", []), ("Ende", [])]),
        ("A [1, 2] and B [2][3].", [("A and B.", [1, 2, 3])]),
        ("[1][1][1]", []),
        ("Line one\nLine two [2]", [("Line one", []), ("Line two", [2])]),
        # a PDF line wrapped inside a sentence is one sentence; a heading line is its own
        (
            "2.2 After transport\nLeave it off for 12\nhours before use.",
            [("2.2 After transport", []), ("Leave it off for 12 hours before use.", [])],
        ),
        ("第一句话没有\n结束。第二句。", [("第一句话没有结束。", []), ("第二句。", [])]),
        ("Keep it.\n\nthen wipe it.", [("Keep it.", []), ("then wipe it.", [])]),
    ],
)
def test_split_claims(text, expected):
    assert split_claims(text) == expected


def test_facts_are_normalized_and_words_are_language_independent():
    assert facts_of("After 9,000 runs (R-24A) on 2024-03-01, 12% of $1,200.50") == {
        "9000",
        "r-24a",
        "2024-03-01",
        "12",
        "1200.50",
    }
    assert words_of("Der Rotor, the ROTOR") == {"der", "rotor", "the"}
    assert words_of("東京タワー") == {"東京", "京タ", "タワ", "ワー"}  # bigrams, no word list


def test_a_claim_whose_number_is_elsewhere_moves_to_the_chunk_that_holds_it():
    # The model cites the MX-30 manual for the MX-60's figure (the demo's showcase error).
    (claim,) = verify_claims(
        split_claims("The R-30F rotor is retired after 12,000 runs [1]."), CHUNKS
    )
    assert claim.supported is True
    assert claim.model_cited == [1] and claim.cited == [2]


def test_a_claim_with_a_number_no_chunk_holds_is_unsupported_and_uncited():
    (claim,) = verify_claims(
        split_claims("The R-24A rotor is retired after 12,500 runs [1]."), CHUNKS
    )
    assert claim.supported is False and claim.cited == []
    assert claim.missing_facts == ["12500"]


def test_the_model_marker_is_kept_when_its_chunk_supports_the_claim():
    (claim,) = verify_claims(split_claims("Rotors are retired after 10 years [2]."), CHUNKS)
    assert claim.supported is True and claim.cited == [2]


def test_a_claim_without_a_marker_gets_the_supporting_chunk():
    claims = verify_claims(split_claims("Clean the lid gasket with warm water. Yes."), CHUNKS)
    assert [c.cited for c in claims] == [[3], []]
    assert [c.supported for c in claims] == [True, None]  # 'Yes.' has nothing to check
    assert render(claims) == "Clean the lid gasket with warm water [3]. Yes."
    assert cited_numbers(claims) == [3]


def test_words_everyone_uses_weigh_little():
    # Most of the words are shared with a chunk, but only the common ones ("the", "of", ...).
    corpus = [f"The part {i} of the machine is in the box." for i in range(50)] + CHUNKS
    statistics = TermStatistics.from_texts(corpus)
    (claim,) = verify_claims(
        split_claims("The rotor of the centrifuge is in the freezer."),
        CHUNKS,
        statistics=statistics,
    )
    assert claim.supported is False


def test_the_embedding_breaks_ties_between_equally_supporting_chunks():
    chunks = ["Rotors are retired after 10 years.", "Rotors are retired after 10 years, always."]
    claims = split_claims("Rotors are retired after 10 years!")

    def embed(texts):  # the claim is closest to the second chunk
        table = {chunks[0]: [1.0, 0.0], chunks[1]: [0.0, 1.0]}
        return np.array([table.get(t, [0.1, 0.9]) for t in texts])

    assert verify_claims(claims, chunks)[0].cited == [1]
    assert verify_claims(claims, chunks, embed=embed)[0].cited == [2]


def test_a_refusal_sentence_is_skipped():
    (claim,) = verify_claims(
        [("I could not find this in the documents.", [])], CHUNKS, skip=lambda s: "not find" in s
    )
    assert claim.supported is None


def test_prompt_markup_copied_into_the_answer_is_removed_and_counted():
    text, count = strip_prompt_markup('<document id="4" source="a.md">Two years</document>. ok')
    assert (text, count) == ("Two years . ok", 2)
    assert strip_prompt_markup("plain") == ("plain", 0)


def test_markers_go_before_the_closing_stop():
    assert with_markers("Two years.", [2]) == "Two years [2]."
    assert with_markers("两年。", [1, 3]) == "两年 [1][3]。"
    assert with_markers("Two years", [1]) == "Two years [1]"


def test_candidate_sentences_for_a_quote():
    found = candidate_sentences(["Short. " + MX30, MX30 + " " + GASKET])
    assert found == [(MX30, 1), (GASKET, 2)]  # 'Short.' is too short, a repeat counts once


def test_a_sentence_the_chunk_starts_inside_is_no_quote():
    # chunks overlap, so a chunk may begin in the middle of a sentence: the fragment is left out
    found = candidate_sentences(["hours before switching it on for the first time.\n" + MX30])
    assert found == [(MX30, 1)]


def test_a_heading_is_no_quote():
    found = candidate_sentences(
        ["## Summary of background data\n\n" + MX30 + "\n\n### Care and cleaning"]
    )
    assert found == [(MX30, 1)]


def test_a_section_or_document_title_is_no_quote():
    # docx and html headings, and PDF outline titles, reach the chunk text as plain lines
    chunk = "Rotor care and retirement\n" + MX30 + "\nMerlin MX-30 Operating Manual"
    found = candidate_sentences(
        [chunk], headings=["Rotor care and retirement", "Merlin MX-30 Operating  manual"]
    )
    assert found == [(MX30, 1)]


def test_a_table_header_row_is_no_quote():
    table = (
        "| Destination | Per diem per full day |\n| --- | :---: |\n"
        "| Other EU countries | €58 |\n| Rest of the world | €72 |"
    )
    found = candidate_sentences([table])
    assert [sentence for sentence, _ in found] == [
        "| Other EU countries | €58 |",
        "| Rest of the world | €72 |",
    ]


@pytest.mark.parametrize(
    "question",
    ["How long will spare parts be available?", "备件供应多长时间\uff1f", "“Is it safe?”"],
)
def test_a_question_is_no_quote(question):
    assert candidate_sentences([question + "\n" + MX30]) == [(MX30, 1)]


@pytest.mark.parametrize(
    "hostile",
    [
        " " * 1_000_000,
        "9" * 1_000_000,
        "[1" * 300_000,
        "a." * 500_000,
        "-1" * 500_000,
        "<document" * 100_000,
        " \n" * 500_000,
        "  " * 500_000 + "\n",
        "\u3042\n" * 500_000,
    ],
)
def test_text_handling_is_linear_on_adversarial_answers(hostile):
    began = time.monotonic()
    verify_claims(split_claims(hostile), [hostile[:100_000], MX30])
    strip_prompt_markup(hostile)
    assert time.monotonic() - began < 20

"""Evaluation measurements on hand-made cases: correctness, faithfulness, citations, retrieval,
refusals and labels (the question file and the config: tests/test_eval_questions.py; the
bootstrap: tests/test_bootstrap.py; the judge: tests/test_judge.py)."""

from __future__ import annotations

import pytest

from eval.grounding import (
    citation_precision_recall,
    fact_errors,
    faithfulness,
    hit_at_k,
    reciprocal_rank,
    same_source,
)
from eval.metrics import (
    contains_gold,
    exact_match,
    extract_label,
    gold_token_recall,
    label_accuracy,
    score_answer,
    token_f1,
)
from eval.questions import EvalQuestion
from eval.refusal import is_refusal, split_sentences
from retrieval.answer_match import normalize_answer
from retrieval.prompt import NO_ANSWER

CHUNK = "The MX-30 rotor must be retired after 5000 runs. Inspect it every 500 runs."


# --- correctness -------------------------------------------------------------------------------


def test_normalization_drops_case_punctuation_articles_and_citation_markers():
    assert normalize_answer("The  Rotor, an MX-30! [1]") == "rotor mx30"
    assert normalize_answer("A cat [1, 2].") == "cat"


@pytest.mark.parametrize(
    ("prediction", "reference", "f1", "em"),
    [
        ("Maren Oduya", "Maren Oduya", 1.0, 1.0),
        ("maren oduya.", "Maren Oduya", 1.0, 1.0),
        ("The answer is 18 weeks [2].", "18 weeks", 2 * (2 / 4) * 1 / (2 / 4 + 1), 0.0),
        ("the 18 weeks", "18 weeks", 1.0, 1.0),
        ("20 weeks", "18 weeks", 0.5, 0.0),
        ("nothing alike", "18 weeks", 0.0, 0.0),
        ("", "", 1.0, 1.0),
        ("", "18 weeks", 0.0, 0.0),
    ],
)
def test_token_f1_and_exact_match(prediction, reference, f1, em):
    assert token_f1(prediction, reference) == pytest.approx(f1)
    assert exact_match(prediction, reference) == em


def test_token_f1_counts_repeated_tokens_once_per_occurrence():
    # 'days days days' shares one 'days' with the reference: precision 1/3, recall 1/2.
    assert token_f1("days days days", "2.1 days") == pytest.approx(
        2 * (1 / 3) * 0.5 / (1 / 3 + 0.5)
    )


# --- refusals and labels -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        NO_ANSWER,
        "I could not find this in the documents",
        "I couldn't find that in the documents.",
        "The documents do not mention the parking rules.",
        "The provided context doesn't specify this.",
        "That is not mentioned in the provided documents.",
        "I don't know.",
        "There is no information about that.",
        "I cannot answer this question from the documents.",
        "The documents do not mention it, but I could not find it elsewhere either.",
        "",
        "  [1] ",
    ],
)
def test_refusals_are_detected(answer):
    assert is_refusal(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "The warranty lasts two years [1].",
        "The samples do not contain lead.",  # 'do not contain' about the world, not the documents
        "No, the rotor must be retired after 5000 runs.",
        "I could not find the exact date. The policy started in 2021 [1].",  # a partial answer
        "The document does not provide a time frame, but it says laptops are replaced every "
        "four years.",
    ],
)
def test_answers_are_not_refusals(answer):
    assert not is_refusal(answer)


GERMAN_REFUSAL = "Das habe ich in den Unterlagen leider nicht gefunden."


def test_the_configured_refusal_counts_beside_the_english_one():
    assert not is_refusal(GERMAN_REFUSAL)  # no common English phrasing in it
    assert is_refusal(GERMAN_REFUSAL, GERMAN_REFUSAL)
    assert is_refusal("das habe ich in den  Unterlagen leider nicht gefunden", GERMAN_REFUSAL)
    assert is_refusal(NO_ANSWER, GERMAN_REFUSAL)
    assert not is_refusal(f"{GERMAN_REFUSAL} Der Rotor hält 5000 Läufe.", GERMAN_REFUSAL)
    # A refusal in the house voice may hold a 'but': said whole, it is still one.
    polite = "Sorry, but that is not in our manuals."
    assert not is_refusal(polite) and is_refusal(polite, polite)
    assert is_refusal("这个文档里没有。", "这个文档里没有。")


def test_the_configured_refusal_scores_as_a_refusal():
    # The engine marks its own refusals; a model's refusal is recognised from its text.
    refusal = _rag_answer(GERMAN_REFUSAL, citations=[])
    rotor = EvalQuestion("q", "after 5000 runs", ["rotor.md"])
    row = score_answer(rotor, refusal, refusal=GERMAN_REFUSAL)
    assert (row["refusal"], row["correct"], row["faithfulness"]) == (1.0, 0.0, None)
    assert score_answer(rotor, refusal)["refusal"] == 0.0  # without the sentence: an answer
    unanswerable = EvalQuestion("q", GERMAN_REFUSAL)
    assert score_answer(unanswerable, refusal, refusal=GERMAN_REFUSAL)["correct"] == 1.0
    assert faithfulness(f"{GERMAN_REFUSAL}", [CHUNK], refusal=GERMAN_REFUSAL) is None


def test_label_extraction_takes_the_first_label_word():
    assert extract_label("Yes. The trial showed no effect.") == "yes"
    assert extract_label("No; maybe later.") == "no"
    assert extract_label("It is unclear.") is None
    assert extract_label(NO_ANSWER) is None
    assert extract_label("Yesterday's results, then maybe.") == "maybe"  # whole words only


def test_label_accuracy_only_for_label_references():
    assert label_accuracy("Yes, it does [1].", "yes") == 1.0
    assert label_accuracy("Maybe.", "no") == 0.0
    assert label_accuracy("It is unclear.", "maybe") == 0.0
    assert label_accuracy("Yes", "18 weeks") is None
    assert label_accuracy("whatever", "No", extractor=lambda _: "no") == 1.0


# --- citations, faithfulness, retrieval --------------------------------------------------------


def test_same_source_matches_paths_and_path_suffixes():
    assert same_source("handbook/leave.md", "handbook/leave.md")
    assert same_source("leave.md", "./handbook/Leave.md")
    assert same_source("handbook\\leave.md", "handbook/leave.md")
    assert not same_source("eave.md", "handbook/leave.md")
    assert not same_source("", "leave.md")


@pytest.mark.parametrize(
    ("cited", "gold", "expected"),
    [
        (["a.md"], ["a.md"], (1.0, 1.0)),
        (["a.md", "b.md"], ["a.md"], (0.5, 1.0)),
        (["a.md", "a.md"], ["a.md", "c.md"], (1.0, 0.5)),  # a source cited twice counts once
        (["b.md"], ["a.md"], (0.0, 0.0)),
        ([], ["a.md"], (None, 0.0)),  # nothing cited: precision undefined, recall 0
        (["a.md"], [], (None, None)),  # no gold: both undefined
        ([], [], (None, None)),
        (["docs/a.md"], ["a.md"], (1.0, 1.0)),
    ],
)
def test_citation_precision_recall(cited, gold, expected):
    assert citation_precision_recall(cited, gold) == expected


def test_sentences_lose_their_citation_markers_and_keep_decimals():
    answer = "Accrual is 2.1 days a month [1]. E.g. staff [2] accrue it. [3]"
    assert split_sentences(answer) == ["Accrual is 2.1 days a month.", "E.g. staff accrue it."]


def test_faithfulness_counts_supported_sentences():
    supported = "The MX-30 rotor is retired after 5000 runs [1]."
    unsupported = "The warranty covers water damage for ten years [1]."
    assert faithfulness(supported, [CHUNK]) == 1.0
    assert faithfulness(unsupported, [CHUNK]) == 0.0
    assert faithfulness(f"{supported} {unsupported}", [CHUNK]) == 0.5
    # Support comes from one chunk: the other cited chunk does not help or hurt.
    assert faithfulness(supported, ["Parking is free.", CHUNK]) == 1.0


def test_faithfulness_in_a_report_reads_the_title_shown_with_a_chunk():
    question = EvalQuestion("When is the rotor retired?", "after 5000 runs", ["rotor.md"])
    retired = "Retired after 5000 runs."
    record = _rag_answer("The MX-30 R-24A rotor is retired after 5000 runs [1].")
    record["retrieved"] = [{"source": "r.md", "chunk_id": "c", "score": 1.0, "text": retired}]
    assert score_answer(question, record)["faithfulness"] == 0.0
    record["retrieved"][0].update(title="MX-30 manual", section="R-24A rotor")
    assert score_answer(question, record)["faithfulness"] == 1.0


def test_faithfulness_threshold_and_edge_cases():
    half = "The rotor needs new paint."  # content words: rotor, needs, new, paint -> 1 of 4
    assert faithfulness(half, [CHUNK], threshold=0.25) == 1.0
    assert faithfulness(half, [CHUNK], threshold=0.5) == 0.0
    assert faithfulness("The rotor is retired after 5000 runs.", []) == 0.0  # cites nothing
    assert faithfulness(NO_ANSWER, [CHUNK]) is None
    # A refusal sentence inside an answer is not judged.
    assert faithfulness(f"I could not find the price. {CHUNK}", [CHUNK]) == 1.0


def test_hit_at_k_and_reciprocal_rank():
    ranked = ["x.md", "handbook/a.md", "y.md"]
    assert hit_at_k(ranked, ["a.md"], 1) == 0.0
    assert hit_at_k(ranked, ["a.md"], 2) == 1.0
    assert reciprocal_rank(ranked, ["a.md"]) == 0.5
    assert reciprocal_rank(ranked, ["z.md"]) == 0.0
    assert hit_at_k(ranked, [], 3) is None
    assert reciprocal_rank(ranked, []) is None
    # chunk ids compare exactly, not as paths
    assert reciprocal_rank(["c/1", "c1"], ["c1"], exact=True) == 0.5


def _rag_answer(text: str, cited_source: str = "manual/rotor.md", **fields) -> dict:
    return {
        "question": "When is the rotor retired?",
        "mode": "rag",
        "answer": text,
        "citations": [
            {
                "n": 1,
                "source": cited_source,
                "page": 3,
                "section": None,
                "chunk_id": "c2",
                "score": 0.9,
                "snippet": CHUNK[:40],
                "text": CHUNK,
            }
        ],
        "retrieved": [
            {"source": "handbook/leave.md", "chunk_id": "c1", "score": 1.0, "text": "..."},
            {"source": "manual/rotor.md", "chunk_id": "c2", "score": 0.9, "text": CHUNK},
        ],
        "refused": False,
        "dropped_citations": 0,
        "seconds": 0.25,
        **fields,
    }


def test_score_answer_for_a_rag_answer():
    question = EvalQuestion("When is the rotor retired?", "after 5000 runs", ["rotor.md"])
    row = score_answer(question, _rag_answer("The rotor is retired after 5000 runs [1]."))
    assert row["exact_match"] == 0.0
    assert 0 < row["token_f1"] < 1
    assert row["faithfulness"] == 1.0
    assert (row["citation_precision"], row["citation_recall"]) == (1.0, 1.0)
    assert (row["hit_at_k"], row["mrr"]) == (1.0, 0.5)
    assert row["refusal"] == 0.0
    assert row["latency_s"] == 0.25
    assert row["label_accuracy"] is None and row["judge_score"] is None
    assert score_answer(question, _rag_answer("x [1]."), k=1)["hit_at_k"] == 0.0


def test_score_answer_uses_the_gold_chunk_id_when_given():
    question = EvalQuestion("q", "after 5000 runs", ["rotor.md"], chunk_id="c1")
    row = score_answer(question, _rag_answer("After 5000 runs [1]."))
    assert row["mrr"] == 1.0


def test_closed_book_answers_have_no_rag_metrics():
    question = EvalQuestion("q", "after 5000 runs", ["rotor.md"])
    answer = {
        "mode": "tuned",
        "answer": "After 5000 runs.",
        "citations": [],
        "retrieved": [],
        "refused": False,
        "latency_s": 0.1,
    }
    row = score_answer(question, answer)
    assert row["exact_match"] == 1.0
    rag_only = ("faithfulness", "citation_precision", "citation_recall", "hit_at_k", "mrr")
    assert all(row[key] is None for key in rag_only)


def test_refusals_score_zero_unless_the_question_is_unanswerable():
    answerable = EvalQuestion("q", "after 5000 runs", ["rotor.md"])
    refusal = _rag_answer(NO_ANSWER, refused=True, citations=[])
    row = score_answer(answerable, refusal)
    assert (row["refusal"], row["token_f1"], row["exact_match"]) == (1.0, 0.0, 0.0)
    assert row["faithfulness"] is None and row["citation_recall"] is None
    unanswerable = EvalQuestion("q", NO_ANSWER)
    assert score_answer(unanswerable, refusal)["exact_match"] == 1.0
    assert score_answer(unanswerable, _rag_answer("After 5000 runs [1]."))["token_f1"] == 0.0


def test_score_answer_takes_dataclasses():
    from dataclasses import dataclass, field

    @dataclass
    class Answer:
        mode: str
        answer: str
        citations: list = field(default_factory=list)
        retrieved: list = field(default_factory=list)
        refused: bool = False
        latency_s: float = 0.5

    row = score_answer(EvalQuestion("q", "yes"), Answer("base", "Yes, it does."))
    assert row["label_accuracy"] == 1.0 and row["latency_s"] == 0.5


@pytest.mark.parametrize(
    ("prediction", "reference", "contained", "recall"),
    [
        ("It must be retired after 9000 runs [2].", "9,000 runs", 1.0, 1.0),
        ("After 9,000 runs or ten years.", "9000 runs", 1.0, 1.0),
        ("After 19000 runs.", "9000 runs", 0.0, 0.5),
        ("Runs: 9000.", "9000 runs", 0.0, 1.0),  # the words, not the phrase
        ("Maren Oduya leads it.", "Maren Oduya", 1.0, 1.0),
        ("Marena Oduya", "Maren Oduya", 0.0, 0.5),
    ],
)
def test_gold_containment_and_gold_token_recall(prediction, reference, contained, recall):
    assert contains_gold(prediction, reference) == contained
    assert gold_token_recall(prediction, reference) == pytest.approx(recall)


def test_correct_is_label_refusal_or_containment_and_a_wrong_refusal_is_wrong():
    rotor = EvalQuestion("q", "after 5000 runs", ["rotor.md"])
    assert score_answer(rotor, _rag_answer("It is retired after 5,000 runs [1]."))["correct"] == 1.0
    assert score_answer(rotor, _rag_answer("After 500 runs [1]."))["correct"] == 0.0
    refusal = _rag_answer(NO_ANSWER, refused=True, citations=[])
    assert score_answer(rotor, refusal)["correct"] == 0.0
    assert score_answer(rotor, refusal)["gold_recall"] == 0.0
    assert score_answer(EvalQuestion("q", NO_ANSWER), refusal)["correct"] == 1.0
    label = EvalQuestion("Is it retired?", "no")
    assert score_answer(label, _rag_answer("No, it is not; yes means..."))["correct"] == 1.0
    assert score_answer(label, _rag_answer("Yes."))["correct"] == 0.0


def test_faithfulness_reads_every_shown_chunk_cited_or_not():
    rotor = EvalQuestion("q", "after 5000 runs", ["rotor.md"])
    uncited = _rag_answer("The MX-30 rotor is retired after 5000 runs.", citations=[])
    row = score_answer(rotor, uncited)
    assert row["faithfulness"] == 1.0  # supported by a shown chunk although nothing is cited
    assert row["citation_recall"] == 0.0 and row["model_cited"] == 0.0
    cited = _rag_answer("After 5000 runs [1].", model_citations=[2])
    assert score_answer(rotor, cited)["model_cited"] == 1.0


def test_fact_errors_count_supported_claims_whose_cited_chunk_lacks_a_number():
    citations = [{"n": 1, "text": CHUNK}, {"n": 2, "text": "Parking is free."}]
    claims = [
        {"text": "The rotor is retired after 5,000 runs.", "cited": [1], "supported": True},
        {"text": "Inspect the MX-30 every 500 runs.", "cited": [1], "supported": True},
        {"text": "Inspect it every 700 runs.", "cited": [1], "supported": True},
        {"text": "Parking costs 5 EUR.", "cited": [2], "supported": True},
        {"text": "It costs 9 EUR.", "cited": [], "supported": False},
    ]
    assert fact_errors(claims, citations) == 2.0

"""The shared filters of synthesized pairs: malformed, grounded, near-duplicates (by words and
by embedding, within one fact), round-trip retrieval, evidence and answer span, prompt markup,
questions about another topic, and the report's counts."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace

import numpy as np
import pytest
from synthesis_data import chunk, pair

from finetune.filters import (
    COPIES_SPAN,
    DUPLICATE,
    EMBEDDING_DUPLICATE,
    EVIDENCE_NOT_QUOTED,
    NO_QUESTION_MARK,
    NOT_GROUNDED,
    NOT_RETRIEVED,
    OFF_TOPIC,
    PROMPT_MARKUP,
    SPAN_NOT_IN_EVIDENCE,
    embedding_duplicates,
    filter_pairs,
)
from finetune.synthesis_config import SynthesisConfig
from finetune.text import jaccard, similar_pairs
from retrieval.prompt import NO_ANSWER

# --- filters -------------------------------------------------------------------------------

ROTOR = chunk("The rotor must be retired after 9,000 runs.", chunk_id="rotor")
VACATION = chunk("Employees earn 2 vacation days per month.", chunk_id="vacation")
CHUNKS = {c.chunk_id: c for c in (ROTOR, VACATION)}


def keyword_search(questions, k):
    """A fake index: a question finds the chunks that share a keyword with it."""
    found = []
    for question in questions:
        words = set(question.lower().replace("?", "").split())
        found.append(
            [
                c.chunk_id
                for c in CHUNKS.values()
                if words & {"rotor", "vacation"} & set(c.text.lower().split())
            ][:k]
        )
    return found


def test_round_trip_drops_a_question_that_does_not_find_its_chunk():
    good = pair("After how many runs must the rotor be retired?", chunk_id="rotor")
    lost = pair("After how many cycles must it be replaced?", chunk_id="rotor")
    kept, report = filter_pairs([good, lost], CHUNKS, keyword_search, SynthesisConfig())
    assert kept == [good]
    assert report.dropped == {NOT_RETRIEVED: 1}
    assert (report.generated, report.kept) == (2, 1)


def test_round_trip_is_one_batched_call():
    calls = []

    def search(questions, k):
        calls.append((len(questions), k))
        return [["rotor"]] * len(questions)

    pairs = [
        pair(f"After how many runs must rotor {n} be retired?", chunk_id="rotor")
        for n in ("alpha", "beta", "gamma")
    ]
    filter_pairs(pairs, CHUNKS, search, SynthesisConfig(roundtrip_k=3, duplicate_jaccard=1.0))
    assert calls == [(3, 3)]


def test_grounding_drops_an_invented_answer():
    invented = pair(
        "How many vacation days do employees earn per month?",
        answer="Employees earn 5 vacation days and a yearly bonus of 300 euros.",
        chunk_id="vacation",
    )
    grounded = pair(
        "How many vacation days do employees earn?",
        answer="Employees earn 2 vacation days per month.",
        chunk_id="vacation",
    )
    kept, report = filter_pairs([invented, grounded], CHUNKS, None, SynthesisConfig())
    assert kept == [grounded]
    assert report.dropped == {NOT_GROUNDED: 1}


def test_near_duplicates_keep_the_first():
    first = pair("After how many runs must the rotor be retired?", chunk_id="rotor")
    again = pair("After how many runs must the rotor be retired", chunk_id="rotor")
    reworded = pair("How many runs must the rotor be retired after?", chunk_id="rotor")
    other = pair("How many vacation days do employees earn?", VACATION.text, "vacation")
    kept, report = filter_pairs([first, again, reworded, other], CHUNKS, None, SynthesisConfig())
    assert kept == [first, other]
    assert report.dropped == {NO_QUESTION_MARK: 1, DUPLICATE: 1}


def test_alike_questions_about_look_alike_documents_are_not_duplicates():
    # Two manuals of sibling products: the same question, two answers, two documents.
    mx30 = chunk("The maximum speed is 15,000 rpm.", "merlin-mx30.md", chunk_id="mx30")
    mx60 = chunk("The maximum speed is 14,000 rpm.", "merlin-mx60.md", chunk_id="mx60")
    copy = chunk("The maximum speed is 15,000 rpm.", "merlin-mx30-copy.md", chunk_id="copy")
    chunks = {c.chunk_id: c for c in (mx30, mx60, copy)}
    same = ["What is the maximum speed of the centrifuge?"] * 3
    reworded = [
        "What is the maximum speed of the centrifuge?",
        "How fast can this centrifuge spin at most?",
        "Which top speed does the unit reach?",
    ]

    def embed(texts):  # every question the same vector: only the fact tells them apart
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

    for questions, config, reason in (
        (same, SynthesisConfig(duplicate_cosine=1.0), DUPLICATE),
        (reworded, SynthesisConfig(duplicate_cosine=0.95), EMBEDDING_DUPLICATE),
    ):
        pairs = [
            pair(q, answer, c.chunk_id, source=c.source, evidence=c.text)
            for q, answer, c in zip(
                questions, ["15,000 rpm", "14,000 rpm", "15,000 rpm"], chunks.values()
            )
        ]
        kept, report = filter_pairs(pairs, chunks, None, config, embed=embed)
        assert [p.chunk_id for p in kept] == ["mx30", "mx60"]  # the copy states the same fact
        assert report.dropped == {reason: 1}


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("Runs?", "9,000 runs.", "question shorter than 4 words"),
        ("When must the rotor be retired", "After 9,000 runs.", "question without a question mark"),
        ("When must the rotor be retired?", "It is.", "answer empty or without content words"),
        ("Is the rotor retired after 9,000 runs?", "Rotor retired 9,000 runs", "question copies"),
    ],
)
def test_malformed_pairs_are_dropped_with_their_reason(question, answer, reason):
    kept, report = filter_pairs([pair(question, answer, "rotor")], CHUNKS, None, SynthesisConfig())
    assert kept == []
    assert [key for key in report.dropped if key.startswith(reason)]


def test_filter_report_counts_per_generator():
    rules = pair("After how many runs must the rotor be retired?", chunk_id="rotor")
    taught = pair(
        "How many vacation days do employees earn each month?",
        VACATION.text,
        "vacation",
        generator="teacher:tiny",
    )
    _, report = filter_pairs([rules, taught], CHUNKS, keyword_search, SynthesisConfig())
    assert report.generated_by == {"rules": 1, "teacher:tiny": 1}
    assert report.kept_by == {"rules": 1, "teacher:tiny": 1}
    assert json.loads(json.dumps(report.to_dict()))["kept"] == 2


def test_similar_pairs_matches_brute_force():
    rng = random.Random(3)
    vocabulary = [f"w{n}" for n in range(12)]
    sets = [frozenset(rng.sample(vocabulary, rng.randint(0, 6))) for _ in range(80)]
    for threshold in (0.3, 0.5, 0.8, 1.0):
        expected = [
            (i, j)
            for i, j in itertools.combinations(range(len(sets)), 2)
            if jaccard(sets[i], sets[j]) >= threshold
        ]
        assert similar_pairs(sets, threshold) == expected


def teacher_pair(question, answer, **extra):
    """A teacher-written factoid pair whose evidence is its answer, about chunk c1."""
    return pair(question, answer, **({"generator": "teacher:fake", "kind": "factoid"} | extra))


# --- evidence, answer span, topic and embedding duplicates -----------------------------

ROTOR_CARE = chunk("Rotor care\n\nThe R-24A rotor must be retired after 9,000 runs.", chunk_id="c1")
SENTENCE = "The R-24A rotor must be retired after 9,000 runs."


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"evidence": "The rotor lasts forever."}, EVIDENCE_NOT_QUOTED),
        ({"span": "7 years"}, SPAN_NOT_IN_EVIDENCE),
        ({"question": "Is it 9,000 runs for the R-24A rotor?", "span": "9,000 runs"}, COPIES_SPAN),
        ({"answer": '<document id="2"> ' + SENTENCE}, PROMPT_MARKUP),
        ({"answer": SENTENCE + " [2]"}, PROMPT_MARKUP),
    ],
)
def test_filters_check_evidence_span_and_markup(changes, reason):
    fields = {
        "question": "After how many runs must the R-24A rotor be retired?",
        "answer": SENTENCE,
        "span": "9,000 runs",
    } | changes
    candidate = teacher_pair(**fields)
    kept, report = filter_pairs([candidate], {"c1": ROTOR_CARE}, None, SynthesisConfig())
    assert kept == [] and report.dropped == {reason: 1}


def test_a_good_answer_first_pair_passes_and_the_report_counts_kinds_and_files():
    good = teacher_pair(
        "After how many runs must the R-24A rotor be retired?", SENTENCE, span="9,000 runs"
    )
    unanswerable = teacher_pair(
        "What does the R-24A rotor cost?", NO_ANSWER, kind="unanswerable", evidence=""
    )
    kept, report = filter_pairs([good, unanswerable], {"c1": ROTOR_CARE}, None, SynthesisConfig())
    assert kept == [good, unanswerable]
    assert report.kept_by_kind == {"factoid": 1, "unanswerable": 1} and report.files_covered == 1


def test_embedding_duplicates_keep_the_first_of_a_group():
    vectors = np.array([[1, 0], [0.999, 0.0447], [0, 1], [0.0447, 0.999]], dtype=np.float32)
    assert embedding_duplicates(vectors, 0.95) == {1, 3}
    assert embedding_duplicates(vectors, 0.95, block=1) == {1, 3}


def test_filter_drops_questions_the_embedding_model_finds_alike():
    first = teacher_pair("After how many runs must the R-24A rotor be retired?", SENTENCE)
    second = teacher_pair("When does the R-24A rotor have to be retired from use?", SENTENCE)

    def embed(texts):
        return np.array([[1.0, 0.0]] * len(texts), dtype=np.float32)

    kept, report = filter_pairs([first, second], {"c1": ROTOR_CARE}, None, SynthesisConfig(), embed)
    assert kept == [first] and report.dropped == {EMBEDDING_DUPLICATE: 1}
    off = SynthesisConfig(duplicate_cosine=1.0)
    assert len(filter_pairs([first, second], {"c1": ROTOR_CARE}, None, off, embed)[0]) == 2


def test_a_teacher_question_must_be_about_its_chunk():
    copied = teacher_pair(
        "How often should the filter cartridge of the pump be replaced?", SENTENCE
    )
    kept, report = filter_pairs([copied], {"c1": ROTOR_CARE}, None, SynthesisConfig())
    assert kept == [] and report.dropped == {OFF_TOPIC: 1}
    rules = teacher_pair(copied.question, SENTENCE, generator="rules", kind="table")
    assert filter_pairs([rules], {"c1": ROTOR_CARE}, None, SynthesisConfig())[0] == [rules]


def test_the_document_title_a_question_is_named_by_counts_as_its_chunk_s_words():
    # The document label comes from the title when the file name is a number (10135926.md).
    titled = replace(ROTOR_CARE, source="docs/10135926.md", title="Orlenby Centrifuge Handbook")
    asked = teacher_pair(
        "Orlenby Centrifuge Handbook: when must the rotor go?", SENTENCE, span="9,000"
    )
    assert filter_pairs([asked], {"c1": replace(titled, title=None)}, None, SynthesisConfig())[
        1
    ].dropped == {OFF_TOPIC: 1}
    assert filter_pairs([asked], {"c1": titled}, None, SynthesisConfig())[0] == [asked]

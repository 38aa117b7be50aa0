"""The shared filters of synthesized pairs: malformed, grounded, near-duplicates (by words and
by embedding, within one fact), round-trip retrieval, and the report's counts."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
from synthesis_data import chunk, pair

from finetune.filters import (
    DUPLICATE,
    EMBEDDING_DUPLICATE,
    NO_QUESTION_MARK,
    NOT_GROUNDED,
    NOT_RETRIEVED,
    filter_pairs,
)
from finetune.synthesis_config import SynthesisConfig
from finetune.text import jaccard, similar_pairs

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

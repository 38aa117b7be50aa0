"""The leakage-aware split into training and held-out questions, and the pairs and evaluation
questions files."""

from __future__ import annotations

import json

import pytest
from synthesis_data import pair

from finetune.pairs import read_pairs_jsonl, write_pairs_jsonl
from finetune.split import leaks, split_pairs, write_eval_questions

# --- split ---------------------------------------------------------------------------------


def many_pairs():
    pairs = []
    for n in range(30):
        name = f"model{n}"
        fact = f"The {name} weighs {n + 10} kg."
        pairs.append(pair(f"How much does the {name} weigh?", fact, f"chunk{n}"))
        # A paraphrase from another generator: shares no question words but the evidence.
        pairs.append(pair(f"What is the weight of the {name}?", fact, f"chunk{n}", generator="t"))
    return pairs


def test_split_never_puts_a_paraphrase_on_both_sides():
    pairs = many_pairs()
    train, evaluation = split_pairs(pairs, eval_fraction=0.2, max_eval=100, seed=1)
    assert len(evaluation) == 12 and len(train) == 48
    assert leaks(train, evaluation) == []
    held = {p.chunk_id for p in evaluation}
    assert not held & {p.chunk_id for p in train}


def test_split_is_deterministic_with_a_seed_and_respects_max_eval():
    pairs = many_pairs()
    assert split_pairs(pairs, seed=7) == split_pairs(pairs, seed=7)
    assert split_pairs(pairs, seed=7) != split_pairs(pairs, seed=8)
    _, evaluation = split_pairs(pairs, eval_fraction=0.5, max_eval=5, seed=0)
    assert len(evaluation) <= 5


def test_split_groups_similar_questions_and_same_answers():
    a = pair("How long is the RMA number valid?", "The RMA number is valid for 14 days.", "x")
    b = pair("For how long is an RMA number valid?", "Valid for two weeks.", "y")
    c = pair("When does the number expire?", "The RMA number is valid for 14 days.", "z")
    d = pair("Which form must go with a returned instrument?", "Form DC-7.", "w")
    for seed in range(10):
        train, evaluation = split_pairs([a, b, c, d], eval_fraction=0.5, seed=seed)
        assert leaks(train, evaluation) == []
        assert {a in evaluation, b in evaluation, c in evaluation} in ({True}, {False})


def test_leaks_finds_a_paraphrase():
    a = pair("How long is the RMA number valid?", "14 days.", "x")
    b = pair("How long is an RMA number valid?", "Two weeks.", "y")
    assert leaks([a], [b]) == [(b, a)]


def test_eval_questions_file(tmp_path):
    path = tmp_path / "eval.jsonl"
    write_eval_questions(path, [pair("How long is the RMA number valid?", "14 days.", "x")])
    row = json.loads(path.read_text())
    assert row == {
        "question": "How long is the RMA number valid?",
        "answer": "14 days.",
        "sources": ["docs/notes.md"],
        "chunk_id": "x",
    }


def test_pairs_jsonl_round_trip(tmp_path):
    pairs = many_pairs()[:3]
    path = tmp_path / "pairs.jsonl"
    write_pairs_jsonl(path, pairs)
    assert read_pairs_jsonl(path) == pairs
    path.write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_pairs_jsonl(path)

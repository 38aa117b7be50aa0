"""Hold out evaluation questions without leaking them into training.

A fact asked twice (two generators, or a question and its paraphrase) must land on one side
only, or the evaluation would reward memorising the training set. Pairs are grouped before the
split: the same chunk and evidence sentence, questions whose topic words overlap (Jaccard >= 0.5),
or the same answer put pairs in one group, transitively (union-find); whole groups are then drawn
into the evaluation side.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from finetune.pairs import UNANSWERABLE, QAPair, write_jsonl_atomic
from finetune.text import jaccard, similar_pairs, token_text, topic_tokens

PARAPHRASE_JACCARD = 0.5


def _answer_key(answer: str) -> str:
    return token_text(answer)


def _evidence_key(pair: QAPair) -> tuple[str, str]:
    return pair.chunk_id, re.sub(r"\s+", " ", pair.evidence.strip().lower())


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, first: int, second: int) -> None:
        first, second = self.find(first), self.find(second)
        if first != second:
            self.parent[max(first, second)] = min(first, second)


def related_groups(pairs: Sequence[QAPair], paraphrase_jaccard: float = PARAPHRASE_JACCARD):
    """Indices of `pairs` grouped so that related pairs share a group.

    Returns:
        Groups as lists of indices, each sorted, ordered by their first index.
    """
    union = _UnionFind(len(pairs))
    first_by_key: dict[object, int] = {}
    for index, pair in enumerate(pairs):
        keys = [("evidence", _evidence_key(pair))]
        if _answer_key(pair.answer):
            keys.append(("answer", _answer_key(pair.answer)))
        for key in keys:
            if key in first_by_key:
                union.union(first_by_key[key], index)
            else:
                first_by_key[key] = index
    question_sets = [topic_tokens(pair.question) for pair in pairs]
    for first, second in similar_pairs(question_sets, paraphrase_jaccard):
        union.union(first, second)
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(pairs)):
        groups[union.find(index)].append(index)
    return sorted(groups.values(), key=lambda group: group[0])


def split_pairs(
    pairs: Sequence[QAPair],
    eval_fraction: float = 0.2,
    max_eval: int = 100,
    seed: int = 0,
) -> tuple[list[QAPair], list[QAPair]]:
    """Split pairs into (train, eval) so that no eval question has a paraphrase in train.

    Whole groups (see `related_groups`) are drawn in a seeded random order into the eval side
    until it holds `eval_fraction` of the pairs, skipping groups that would pass `max_eval` and
    groups with an unanswerable pair (those stay in train).

    Returns:
        (train, eval), each in the order of `pairs`.
    """
    target = min(round(eval_fraction * len(pairs)), max_eval)
    groups = related_groups(pairs)
    random.Random(seed).shuffle(groups)
    held_out: set[int] = set()
    for group in groups:
        if len(held_out) >= target:
            break
        # A chunk that does not answer a question says nothing of whether the corpus does:
        # such pairs train refusals but cannot be scored as one.
        if any(pairs[index].kind == UNANSWERABLE for index in group):
            continue
        if len(held_out) + len(group) <= max_eval and len(group) < len(pairs):
            held_out.update(group)
    train = [pair for index, pair in enumerate(pairs) if index not in held_out]
    evaluation = [pair for index, pair in enumerate(pairs) if index in held_out]
    return train, evaluation


def leaks(
    train: Sequence[QAPair],
    evaluation: Sequence[QAPair],
    paraphrase_jaccard: float = PARAPHRASE_JACCARD,
) -> list[tuple[QAPair, QAPair]]:
    """(eval pair, train pair) couples that ask the same thing: same chunk and evidence, same
    answer, or questions whose topic words overlap at least `paraphrase_jaccard`."""
    found = []
    train_sets = [topic_tokens(pair.question) for pair in train]
    train_evidence = defaultdict(list)
    train_answers = defaultdict(list)
    for pair in train:
        train_evidence[_evidence_key(pair)].append(pair)
        train_answers[_answer_key(pair.answer)].append(pair)
    for held in evaluation:
        related = train_evidence[_evidence_key(held)]
        if _answer_key(held.answer):
            related = related + train_answers[_answer_key(held.answer)]
        held_set = topic_tokens(held.question)
        related = related + [
            pair
            for pair, pair_set in zip(train, train_sets)
            if jaccard(held_set, pair_set) >= paraphrase_jaccard
        ]
        seen = set()
        for pair in related:
            if id(pair) not in seen:
                seen.add(id(pair))
                found.append((held, pair))
    return found


def write_eval_questions(path: Path, pairs: Sequence[QAPair]) -> None:
    """Write held-out pairs as the evaluation questions file, atomically: one
    {"question", "answer", "sources": [source], "chunk_id"} object a line. The answer is the
    pair's key fact (`QAPair.span`) when it has one: the gold a correct answer must hold."""
    write_jsonl_atomic(
        path,
        (
            {
                "question": pair.question,
                "answer": pair.span or pair.answer,
                "sources": [pair.source],
                "chunk_id": pair.chunk_id,
            }
            for pair in pairs
        ),
    )

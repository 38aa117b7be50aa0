"""Checks every synthetic pair must pass before it is trained on, with a count of what each check
dropped: well-formed, grounded in its chunk, not a near-duplicate, and able to find its own chunk
again by search (round-trip retrieval)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from finetune.pairs import QAPair
from finetune.synthesis_config import SynthesisConfig
from finetune.text import content_tokens, similar_pairs, tokens, topic_tokens
from retrieval.documents import Chunk

SearchMany = Callable[[list[str], int], list[list[str]]]
"""search_many(questions, k) -> for each question, the chunk ids of its top-k hits."""

MIN_QUESTION_WORDS = 4
MAX_QUESTION_WORDS = 40

UNKNOWN_CHUNK = "its chunk is not in the index"
QUESTION_TOO_SHORT = f"question shorter than {MIN_QUESTION_WORDS} words"
QUESTION_TOO_LONG = f"question longer than {MAX_QUESTION_WORDS} words"
NO_QUESTION_MARK = "question without a question mark"
EMPTY_ANSWER = "answer empty or without content words"
COPIES_ANSWER = "question copies the answer"
NOT_GROUNDED = "not grounded in its chunk"
DUPLICATE = "near-duplicate question"
NOT_RETRIEVED = "search does not find its chunk"


@dataclass
class FilterReport:
    """What the checks did.

    Attributes:
        generated: Pairs checked.
        kept: Pairs that passed every check.
        dropped: Pairs dropped, by reason (each pair counts once, under the first check it
            failed).
        generated_by: Pairs checked, by generator ('rules', 'teacher:<model>').
        kept_by: Pairs kept, by generator.
        unparsable: Teacher outputs that held no question and answer (never became pairs).
    """

    generated: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    generated_by: dict[str, int] = field(default_factory=dict)
    kept_by: dict[str, int] = field(default_factory=dict)
    unparsable: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def malformed_reason(pair: QAPair) -> str | None:
    """Why a pair is not a usable question and answer, or None when it is."""
    question_words = pair.question.split()
    if len(question_words) < MIN_QUESTION_WORDS:
        return QUESTION_TOO_SHORT
    if len(question_words) > MAX_QUESTION_WORDS:
        return QUESTION_TOO_LONG
    if not pair.question.rstrip().endswith("?"):
        return NO_QUESTION_MARK
    answer = content_tokens(pair.answer)
    if not answer:
        return EMPTY_ANSWER
    # A yes/no answer quotes the statement its question was made from; its label is the answer.
    if set(answer) <= set(tokens(pair.question)) and not yes_no_label(pair.answer):
        return COPIES_ANSWER
    return None


def yes_no_label(answer: str) -> str:
    """'yes' or 'no' for an answer that starts 'Yes.' or 'No.', else ''."""
    first = answer.split(".", 1)[0].strip().lower()
    return first if first in ("yes", "no") else ""


def grounding(answer: str, chunk_text: str) -> float:
    """Share of the answer's content tokens (numbers included) that occur in `chunk_text`."""
    answer_tokens = content_tokens(answer)
    if not answer_tokens:
        return 0.0
    present = set(tokens(chunk_text))
    return sum(token in present for token in answer_tokens) / len(answer_tokens)


def _retrieves_own_chunk(
    pair: QAPair, hit_ids: Sequence[str], chunks_by_id: Mapping[str, Chunk]
) -> bool:
    if pair.chunk_id in hit_ids:
        return True
    # Overlapping chunks share sentences: a hit that holds the same evidence is the same answer.
    evidence = " ".join(tokens(pair.evidence))
    return bool(evidence) and any(
        hit in chunks_by_id and evidence in " ".join(tokens(chunks_by_id[hit].text))
        for hit in hit_ids
    )


def filter_pairs(
    pairs: Sequence[QAPair],
    chunks_by_id: Mapping[str, Chunk],
    search_many: SearchMany | None,
    config: SynthesisConfig,
) -> tuple[list[QAPair], FilterReport]:
    """Keep the pairs that pass every check, in their order.

    Checks run cheapest first: malformed, grounded (min_grounding), near-duplicates
    (duplicate_jaccard among questions; the first is kept), then round-trip retrieval: one
    `search_many` call for all remaining questions, keeping a pair when its chunk, or a chunk
    holding the same evidence, is in the top `roundtrip_k`.

    Args:
        pairs: Candidate pairs.
        chunks_by_id: The chunks the pairs refer to, by chunk id.
        search_many: Batch search returning chunk ids; None (or roundtrip_k = 0) skips the
            round trip.
        config: Thresholds.

    Returns:
        (kept pairs, report).
    """
    dropped: Counter[str] = Counter()
    survivors: list[QAPair] = []
    for pair in pairs:
        chunk = chunks_by_id.get(pair.chunk_id)
        reason = UNKNOWN_CHUNK if chunk is None else malformed_reason(pair)
        if reason is None and grounding(pair.answer, chunk.text) < config.min_grounding:
            reason = NOT_GROUNDED
        if reason:
            dropped[reason] += 1
        else:
            survivors.append(pair)

    # Questions are compared within one answer label: 'Is it 9,000 runs?' (yes) and its
    # false twin 'Is it 13,500 runs?' (no) differ by design.
    duplicates: set[int] = set()
    by_label: dict[str, list[int]] = {}
    for index, pair in enumerate(survivors):
        by_label.setdefault(yes_no_label(pair.answer), []).append(index)
    for indices in by_label.values():
        sets = [topic_tokens(survivors[i].question) for i in indices]
        duplicates |= {indices[j] for _, j in similar_pairs(sets, config.duplicate_jaccard)}
    # A pair whose earlier twin was itself dropped as a duplicate still has a kept twin earlier.
    unique = [pair for index, pair in enumerate(survivors) if index not in duplicates]
    dropped[DUPLICATE] += len(survivors) - len(unique)

    kept = unique
    if search_many is not None and config.roundtrip_k > 0 and unique:
        hits = search_many([pair.question for pair in unique], config.roundtrip_k)
        kept = [
            pair
            for pair, hit_ids in zip(unique, hits)
            if _retrieves_own_chunk(pair, hit_ids, chunks_by_id)
        ]
        dropped[NOT_RETRIEVED] += len(unique) - len(kept)

    report = FilterReport(
        generated=len(pairs),
        kept=len(kept),
        dropped={reason: count for reason, count in sorted(dropped.items()) if count},
        generated_by=dict(sorted(Counter(pair.generator for pair in pairs).items())),
        kept_by=dict(sorted(Counter(pair.generator for pair in kept).items())),
    )
    return kept, report


def retriever_search(retriever) -> SearchMany:
    """Adapt `retrieval.search.Retriever` to `SearchMany` (chunk ids of the hits)."""

    def search_many(questions: list[str], k: int) -> list[list[str]]:
        return [[hit.chunk_id for hit in hits] for hits in retriever.search_many(questions, k)]

    return search_many

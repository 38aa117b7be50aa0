"""Checks every synthetic pair must pass before it is trained on, whichever generator wrote it,
with a count of what each check dropped: well-formed and free of prompt markup, grounded in its
chunk (the evidence is a quote of the chunk and holds the answer), not giving its answer away, not
a near-duplicate (by words, then by the project's own embedding model), and able to find its own
chunk again by search (round-trip retrieval)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from finetune.consistency import Consistent
from finetune.pairs import TEACHER_PREFIX, UNANSWERABLE, QAPair
from finetune.synthesis_config import SynthesisConfig
from finetune.text import content_tokens, similar_pairs, token_text, tokens, topic_tokens
from retrieval.answer_match import normalize_answer
from retrieval.documents import Chunk

SearchMany = Callable[[list[str], int], list[list[str]]]
"""search_many(questions, k) -> for each question, the chunk ids of its top-k hits."""
Embed = Callable[[list[str]], np.ndarray]
"""embed(texts) -> one L2-normalized vector per text, shape (len(texts), dim)."""

MIN_QUESTION_WORDS = 4
MAX_QUESTION_WORDS = 40

UNKNOWN_CHUNK = "its chunk is not in the index"
PROMPT_MARKUP = "holds prompt markup or citation markers"
EVIDENCE_NOT_QUOTED = "evidence is not a quote of its chunk"
SPAN_NOT_IN_EVIDENCE = "evidence does not hold the answer"
COPIES_SPAN = "question gives the answer away"
COPIES_EVIDENCE = "question copies its evidence"
EMBEDDING_DUPLICATE = "near-duplicate question (embeddings)"
INCONSISTENT = "the base model, shown its chunk, prefers another sentence"
OFF_TOPIC = "question is not about its chunk"
MIN_TOPIC_SHARE = 0.5
"""A teacher's question must take at least this share of its content words from its chunk (its
text, file name and section): a small teacher copies words of its worked example instead."""
MIN_EVIDENCE_WORDS = 6
"""A question holding every content word of an evidence this long restates it, answer and all
(yes/no and FAQ questions excepted: they are made of their statement)."""
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
        generated_by_kind: Pairs checked, by type (`finetune.pairs.KINDS`).
        kept_by_kind: Pairs kept, by type.
        unparsable: Teacher outputs that held no question and answer (never became pairs).
        files: Documents in the corpus.
        files_covered: Documents that at least one kept pair is about.
    """

    generated: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    generated_by: dict[str, int] = field(default_factory=dict)
    kept_by: dict[str, int] = field(default_factory=dict)
    generated_by_kind: dict[str, int] = field(default_factory=dict)
    kept_by_kind: dict[str, int] = field(default_factory=dict)
    unparsable: int = 0
    files: int = 0
    files_covered: int = 0

    def recount(self, kept: Sequence[QAPair]) -> None:
        """Set the counts of kept pairs from `kept`."""
        self.kept = len(kept)
        self.kept_by = dict(sorted(Counter(pair.generator for pair in kept).items()))
        self.kept_by_kind = dict(sorted(Counter(pair.kind or "?" for pair in kept).items()))
        self.files_covered = len({pair.source for pair in kept})

    def to_dict(self) -> dict:
        return asdict(self)


# '<document id=...>', '</documents>' and '[2]', as the answer prompt writes them.
_MARKUP = re.compile(r"</?documents?\b|\[\d{1,3}(?:,\s?\d{1,3})*\]", re.IGNORECASE)


def malformed_reason(pair: QAPair) -> str | None:
    """Why a pair is not a usable question and answer, or None when it is."""
    # Tokens, not spaces: a Chinese question has no spaces but many tokens.
    question_words = tokens(pair.question)
    if len(question_words) < MIN_QUESTION_WORDS:
        return QUESTION_TOO_SHORT
    if len(question_words) > MAX_QUESTION_WORDS:
        return QUESTION_TOO_LONG
    if not pair.question.rstrip().endswith(("?", "\uff1f")):
        return NO_QUESTION_MARK
    if _MARKUP.search(pair.question) or _MARKUP.search(pair.answer):
        return PROMPT_MARKUP
    if pair.kind == UNANSWERABLE:
        return None
    answer = content_tokens(pair.answer)
    if not answer:
        return EMPTY_ANSWER
    # A yes/no answer quotes the statement its question was made from; its label is the answer.
    if set(answer) <= set(tokens(pair.question)) and not yes_no_label(pair.answer):
        return COPIES_ANSWER
    if pair.span and set(tokens(pair.span)) <= set(tokens(pair.question)):
        return COPIES_SPAN
    return None


def evidence_reason(pair: QAPair, chunk_text: str) -> str | None:
    """Why a pair's evidence does not back it, or None: the evidence must be a quote of the
    chunk (compared token by token, so spacing and table pipes do not matter), hold the chosen
    answer, and not be restated by the question."""
    if pair.kind == UNANSWERABLE:
        return None
    evidence = token_text(pair.evidence)
    if not evidence or evidence not in token_text(chunk_text):
        return EVIDENCE_NOT_QUOTED
    if pair.span and token_text(pair.span) not in evidence:
        return SPAN_NOT_IN_EVIDENCE
    if pair.kind not in ("yes", "no", "faq"):
        words = set(content_tokens(pair.evidence))
        if len(words) >= MIN_EVIDENCE_WORDS:
            asked = set(content_tokens(pair.question))
            if words <= asked:
                return COPIES_EVIDENCE
    return None


def off_topic(pair: QAPair, chunk: Chunk) -> bool:
    """Whether a teacher's question takes fewer than `MIN_TOPIC_SHARE` of its content words
    from its chunk, file name, title and section (a question names its document by the file
    name or the title: `finetune.generators.naming`)."""
    asked = set(content_tokens(pair.question))
    if not pair.generator.startswith(TEACHER_PREFIX) or not asked:
        return False
    named = [chunk.text, chunk.source, chunk.title or "", chunk.section or ""]
    known = set(tokens(" ".join(named)))
    return len(asked & known) < MIN_TOPIC_SHARE * len(asked)


def embedding_duplicates(
    vectors: np.ndarray,
    threshold: float,
    block: int = 512,
    related: Callable[[int, int], bool] | None = None,
) -> set[int]:
    """Indices of rows with a cosine of at least `threshold` to an earlier kept row (rows are
    L2-normalized) that is `related` to it (default: any); the first of a group is kept.
    Compared in blocks, so memory stays block x n."""
    duplicates: set[int] = set()
    for start in range(0, len(vectors), block):
        similarity = vectors[start : start + block] @ vectors.T
        for offset, row in enumerate(similarity):
            index = start + offset
            earlier = np.nonzero(row[:index] >= threshold)[0]
            if any(
                int(other) not in duplicates and (related is None or related(int(other), index))
                for other in earlier
            ):
                duplicates.add(index)
    return duplicates


Fact = tuple[str, str]
"""What a pair asks for, as `same_fact` compares it: its document and its normalized answer."""


def fact_of(pair: QAPair) -> Fact:
    return pair.source, normalize_answer(pair.answer)


def same_fact(first: Fact, second: Fact) -> bool:
    """Whether two alike questions ask for one fact: about the same document, or with the same
    answer. 'PubMed 1: What is said about methods?' and 'PubMed 2: ...' name two documents and
    have two answers: look-alike documents, not a duplicate."""
    return first[0] == second[0] or first[1] == second[1]


def _label_groups(pairs: Sequence[QAPair]) -> list[list[int]]:
    """Indices of `pairs` by answer label ('yes', 'no' or ''): 'Is it 9,000 runs?' (yes) and its
    false twin 'Is it 13,500 runs?' (no) differ by design, so duplicates are looked for within
    one label only."""
    groups: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault(yes_no_label(pair.answer), []).append(index)
    return list(groups.values())


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
    evidence = token_text(pair.evidence)
    return bool(evidence) and any(
        hit in chunks_by_id and evidence in token_text(chunks_by_id[hit].text) for hit in hit_ids
    )


def filter_pairs(
    pairs: Sequence[QAPair],
    chunks_by_id: Mapping[str, Chunk],
    search_many: SearchMany | None,
    config: SynthesisConfig,
    embed: Embed | None = None,
    consistent: Consistent | None = None,
) -> tuple[list[QAPair], FilterReport]:
    """Keep the pairs that pass every check, in their order.

    Checks run cheapest first: malformed, grounded (min_grounding) and backed by its evidence,
    near-duplicates (duplicate_jaccard among questions, then duplicate_cosine among their
    embeddings; the first is kept), then round-trip retrieval: one `search_many` call for all
    remaining questions, keeping a pair when its chunk, or a chunk holding the same evidence,
    is in the top `roundtrip_k`; last, for a teacher's factoid pairs, `consistent` (the base
    model's own reading of the chunk, `finetune.consistency`).

    Args:
        pairs: Candidate pairs.
        chunks_by_id: The chunks the pairs refer to, by chunk id.
        search_many: Batch search returning chunk ids; None (or roundtrip_k = 0) skips the
            round trip.
        config: Thresholds.
        embed: The embedding model for the second duplicate check; None skips it.
        consistent: The base-model check of teacher-written factoid pairs; None skips it.

    Returns:
        (kept pairs, report).
    """
    dropped: Counter[str] = Counter()
    survivors: list[QAPair] = []
    for pair in pairs:
        chunk = chunks_by_id.get(pair.chunk_id)
        reason = UNKNOWN_CHUNK if chunk is None else malformed_reason(pair)
        if reason is None and pair.kind != UNANSWERABLE:
            if grounding(pair.answer, chunk.text) < config.min_grounding:
                reason = NOT_GROUNDED
            else:
                reason = evidence_reason(pair, chunk.text)
            if reason is None and off_topic(pair, chunk):
                reason = OFF_TOPIC
        if reason:
            dropped[reason] += 1
        else:
            survivors.append(pair)

    # A duplicate asks for the same fact (`same_fact`) within one answer label.
    duplicates: set[int] = set()
    facts = [fact_of(pair) for pair in survivors]
    for indices in _label_groups(survivors):
        sets = [topic_tokens(survivors[i].question) for i in indices]
        alike = sorted(similar_pairs(sets, config.duplicate_jaccard), key=lambda ij: ij[::-1])
        for i, j in alike:
            first, second = indices[i], indices[j]
            if first not in duplicates and same_fact(facts[first], facts[second]):
                duplicates.add(second)
    kept_rows = [index for index in range(len(survivors)) if index not in duplicates]
    unique = [survivors[index] for index in kept_rows]
    facts = [facts[index] for index in kept_rows]
    dropped[DUPLICATE] += len(survivors) - len(unique)

    if embed is not None and config.duplicate_cosine < 1 and len(unique) > 1:
        vectors = np.asarray(embed([pair.question for pair in unique]), dtype=np.float32)
        close: set[int] = set()
        for indices in _label_groups(unique):

            def related(i: int, j: int, indices: list[int] = indices) -> bool:
                return same_fact(facts[indices[i]], facts[indices[j]])

            found = embedding_duplicates(vectors[indices], config.duplicate_cosine, related=related)
            close |= {indices[j] for j in found}
        dropped[EMBEDDING_DUPLICATE] += len(close)
        unique = [pair for index, pair in enumerate(unique) if index not in close]

    kept = unique
    if search_many is not None and config.roundtrip_k > 0 and unique:
        hits = search_many([pair.question for pair in unique], config.roundtrip_k)
        kept = [
            pair
            for pair, hit_ids in zip(unique, hits)
            if _retrieves_own_chunk(pair, hit_ids, chunks_by_id)
        ]
        dropped[NOT_RETRIEVED] += len(unique) - len(kept)

    checked = [
        index
        for index, pair in enumerate(kept)
        if pair.generator.startswith(TEACHER_PREFIX) and pair.kind == "factoid"
    ]
    if consistent is not None and checked:
        verdicts = consistent(
            [(kept[index], chunks_by_id[kept[index].chunk_id]) for index in checked]
        )
        failed = {index for index, verdict in zip(checked, verdicts) if not verdict}
        dropped[INCONSISTENT] += len(failed)
        kept = [pair for index, pair in enumerate(kept) if index not in failed]

    report = FilterReport(
        generated=len(pairs),
        kept=len(kept),
        dropped={reason: count for reason, count in sorted(dropped.items()) if count},
        generated_by=dict(sorted(Counter(pair.generator for pair in pairs).items())),
        generated_by_kind=dict(sorted(Counter(pair.kind or "?" for pair in pairs).items())),
    )
    report.recount(kept)
    return kept, report


def retriever_search(retriever) -> SearchMany:
    """Adapt `retrieval.search.Retriever` to `SearchMany` (chunk ids of the hits)."""

    def search_many(questions: list[str], k: int) -> list[list[str]]:
        return [[hit.chunk_id for hit in hits] for hits in retriever.search_many(questions, k)]

    return search_many

"""The synthesis step of `ragtune tune`: write question/answer pairs from the indexed chunks by
rules and by a teacher model, then keep only the pairs that pass every filter."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from finetune.filters import FilterReport, SearchMany, filter_pairs
from finetune.pairs import QAPair
from finetune.rule_questions import rule_pairs
from finetune.synthesis_config import SynthesisConfig
from finetune.teacher import Teacher, build_prompt, pairs_from_outputs
from retrieval.documents import Chunk

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total), stage one of 'rules', 'teacher', 'filter'."""

# Part of the synthesis stage's input hash: bump it when the rules or filters change what they
# write, so that `ragtune tune` synthesizes again instead of reusing an older pairs file.
SYNTHESIS_VERSION = 4
MIN_TEACHER_WORDS = 25
"""Chunks shorter than this (headings, table fragments) say too little for a teacher question."""


def pick_teacher_chunks(chunks: Sequence[Chunk], budget: int) -> list[Chunk]:
    """Up to `budget` chunks with enough text, spread across documents: each document gets a
    turn in a round-robin, and a document's chunks are taken evenly spaced along it.

    Deterministic: the same chunks always give the same choice, in (source, position) order.
    """
    by_source: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        if len(chunk.text.split()) >= MIN_TEACHER_WORDS:
            by_source[chunk.source].append(chunk)
    sources = sorted(by_source)
    quota = dict.fromkeys(sources, 0)
    remaining = min(budget, sum(len(by_source[source]) for source in sources))
    while remaining:
        for source in sources:
            if remaining and quota[source] < len(by_source[source]):
                quota[source] += 1
                remaining -= 1
    picked = []
    for source in sources:
        ordered = sorted(by_source[source], key=lambda chunk: chunk.position)
        count = quota[source]
        picked.extend(ordered[int((i + 0.5) * len(ordered) / count)] for i in range(count))
    return picked


def teacher_pairs(
    chunks: Sequence[Chunk],
    teacher: Teacher,
    batch_size: int,
    progress: Progress | None = None,
) -> tuple[list[QAPair], int]:
    """Ask `teacher` for one pair per chunk, `batch_size` prompts per call.

    Returns:
        (pairs in the order of `chunks`, number of unparsable replies).
    """
    # Chunks of similar length share a batch, so little of each batch is padding.
    order = sorted(range(len(chunks)), key=lambda index: len(chunks[index].text))
    outputs = [""] * len(chunks)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        replies = teacher.generate([build_prompt(chunks[index]) for index in rows])
        for index, reply in zip(rows, replies):
            outputs[index] = reply
        if progress:
            progress("teacher", min(start + batch_size, len(order)), len(order))
    return pairs_from_outputs(chunks, outputs, teacher.name)


def synthesize(
    chunks: list[Chunk],
    config: SynthesisConfig,
    search_many: SearchMany | None,
    teacher: Teacher | None,
    progress: Progress | None = None,
) -> tuple[list[QAPair], FilterReport]:
    """Write pairs from `chunks` and keep those that pass the filters.

    Args:
        chunks: The indexed chunks.
        config: What writes the pairs and the filter thresholds.
        search_many: Batch search returning chunk ids, for the round-trip check (None skips
            it); `finetune.filters.retriever_search` adapts a `Retriever`.
        teacher: The teacher model, or None for rule-written pairs only.
        progress: Called as progress(stage, done, total).

    Returns:
        (kept pairs: rule pairs in chunk order, then teacher pairs; the filter report, with
        per-generator counts and the number of unparsable teacher replies).
    """
    pairs: list[QAPair] = []
    if config.rules:
        # Fast (about a millisecond a chunk), so one call: documents are named from all chunks.
        pairs.extend(rule_pairs(chunks, config.max_pairs_per_chunk))
        if progress:
            progress("rules", len(chunks), len(chunks))
    unparsable = 0
    if teacher is not None and config.teacher_max_chunks > 0:
        chosen = pick_teacher_chunks(chunks, config.teacher_max_chunks)
        written, unparsable = teacher_pairs(chosen, teacher, config.teacher_batch_size, progress)
        pairs.extend(written)
    if progress:
        progress("filter", 0, len(pairs))
    chunks_by_id = {chunk.chunk_id: chunk for chunk in chunks}
    kept, report = filter_pairs(pairs, chunks_by_id, search_many, config)
    report.unparsable = unparsable
    if progress:
        progress("filter", len(pairs), len(pairs))
    return kept, report

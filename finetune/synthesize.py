"""The synthesis step of `ragtune tune`: the generators (`finetune.generators`) write candidate
question/answer pairs from the indexed chunks, the shared filters keep the good ones, and the
summary says what came from where: pairs per type, per source and the share of files covered."""

from __future__ import annotations

from collections.abc import Sequence

from finetune.consistency import Consistent
from finetune.filters import Embed, FilterReport, SearchMany, filter_pairs
from finetune.generators import Progress, answer_first, structural, triples, yes_no
from finetune.pairs import QAPair
from finetune.synthesis_config import SynthesisConfig
from finetune.teacher import Teacher
from retrieval.documents import Chunk
from retrieval.persona import Verdicts

# Part of the synthesis stage's input hash: bump it when the generators or filters change what
# they write, so that `ragtune tune` synthesizes again instead of reusing an older pairs file.
SYNTHESIS_VERSION = 9


def balance_labels(pairs: Sequence[QAPair]) -> list[QAPair]:
    """Drop the excess of the larger of the yes / no answered pairs, last ones first, so a
    tuned model does not learn to say yes (documents state facts: most are yes)."""
    yes = [index for index, pair in enumerate(pairs) if pair.kind == "yes"]
    no = [index for index, pair in enumerate(pairs) if pair.kind == "no"]
    larger, smaller = (yes, no) if len(yes) > len(no) else (no, yes)
    excess = set(larger[len(smaller) :])
    return [pair for index, pair in enumerate(pairs) if index not in excess]


def synthesize(
    chunks: list[Chunk],
    config: SynthesisConfig,
    search_many: SearchMany | None,
    teacher: Teacher | None,
    progress: Progress | None = None,
    embed: Embed | None = None,
    consistent: Consistent | None = None,
    verdicts: Verdicts | None = None,
) -> tuple[list[QAPair], FilterReport]:
    """Write pairs from `chunks` and keep those that pass the filters.

    Args:
        chunks: The indexed chunks.
        config: What writes the pairs and the filter thresholds.
        search_many: Batch search returning chunk ids, for the round-trip check (None skips
            it); `finetune.filters.retriever_search` adapts a `Retriever`.
        teacher: The teacher model, or None for structural pairs only.
        progress: Called as progress(stage, done, total).
        embed: Embeds questions for the near-duplicate check (None skips that check).
        consistent: The base model's check of teacher-written pairs
            (`finetune.consistency.rank_check`; None skips it).
        verdicts: The answer language's yes and no, for the yes/no twins of kept pairs
            (`finetune.generators.yes_no`); None writes none.

    Returns:
        (kept pairs: structural pairs in chunk order, then teacher pairs, then yes/no twins;
        the filter report,
        with counts per generator, per type and per file).
    """
    pairs: list[QAPair] = []
    if config.rules or config.english_rules:
        # Fast (about a millisecond a chunk), so one call: documents are named from all chunks.
        pairs.extend(structural.generate(chunks, config))
        if progress:
            progress("rules", len(chunks), len(chunks))
    unparsable = 0
    if teacher is not None and config.teacher_questions > 0:
        style = config.resolved_teacher_style()
        module = answer_first if style == "answer_first" else triples
        written, unparsable = module.generate(chunks, config, teacher, progress)
        pairs.extend(written)
    if progress:
        progress("filter", 0, len(pairs))
    chunks_by_id = {chunk.chunk_id: chunk for chunk in chunks}
    kept, report = filter_pairs(pairs, chunks_by_id, search_many, config, embed, consistent)
    if verdicts is not None:
        twins = yes_no.twin_pairs(kept, verdicts, config.yes_no_share)
        kept = [*kept, *twins]
        report.generated += len(twins)
        for twin in twins:  # counted as written, like every other pair
            report.generated_by[twin.generator] = report.generated_by.get(twin.generator, 0) + 1
            report.generated_by_kind[twin.kind] = report.generated_by_kind.get(twin.kind, 0) + 1
        report.recount(kept)
    balanced = balance_labels(kept)
    if len(balanced) < len(kept):
        report.dropped["yes/no label balance"] = len(kept) - len(balanced)
        kept = balanced
        report.recount(kept)
    report.unparsable = unparsable
    report.files = len({chunk.source for chunk in chunks})
    if progress:
        progress("filter", len(pairs), len(pairs))
    return kept, report

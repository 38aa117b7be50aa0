"""The quote gate stage of `ragtune tune`: the bounds below which the answer engine refuses
rather than quote a shown sentence (`retrieval.quote_gate`), calibrated on the training pairs
and saved as RUN/quote_gate.json. It runs after the selector stage, whose model it calibrates
beside the project's embedding model, and is skipped when its inputs did not change.

Each training pair gives two cases, with the chunks the engine would show:
- answerable: the pair's own chunk and the best other retrieved chunks;
- lacking: the retrieved chunks with every chunk of the pair's document left out (what the
  engine shows when the corpus lacks the answer).
The statistic of a case is the highest similarity between the question and a shown sentence that
could be quoted, the one the engine compares with the bound."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from builder.engine import open_retriever
from builder.project import Project
from builder.stamps import digest, file_digest, read_json
from builder.tune_layout import SELECTOR, SELECTOR_STAMP, TRAIN_PAIRS, Progress, TuneReport
from retrieval.answer import quote_candidates
from retrieval.quote_gate import (
    EMBEDDING_BOUND,
    QUOTE_GATE,
    SELECTOR_BOUND,
    GateBound,
    best_quote_scores,
    calibrate,
    write_bounds,
)
from retrieval.search import Hit

if TYPE_CHECKING:
    from retrieval.documents import Chunk

GATE_PAIRS = 500
"""Training pairs calibrated on at most (a seeded sample): enough for a stable bound, a few
seconds of encoding."""
OVERFETCH = 10
"""Chunks searched per shown chunk, so that a long document holding all the top chunks still
leaves others once it is left out."""


def gate_cases(
    pairs: list, chunks_by_id: dict[str, Chunk], found: list[list[Hit]], documents: int
) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(questions, answerable candidates, lacking candidates) of the pairs that have both."""
    questions, answerable, lacking = [], [], []
    for pair, hits in zip(pairs, found):
        chunk = chunks_by_id.get(pair.chunk_id)
        if chunk is None:
            continue
        others = [h for h in hits if h.chunk_id != pair.chunk_id][: documents - 1]
        shown = [Hit.of(chunk), *others]
        missing = [h for h in hits if h.source != pair.source][:documents]
        with_answer = [s for s, _ in quote_candidates(shown)]
        without = [s for s, _ in quote_candidates(missing)]
        if with_answer and without:
            questions.append(pair.question)
            answerable.append(with_answer)
            lacking.append(without)
    return questions, answerable, lacking


def calibrate_gate_stage(
    project: Project,
    run_dir: Path,
    chunks: list[Chunk],
    index_id: str,
    report: TuneReport,
    progress: Progress,
) -> None:
    """Write RUN/quote_gate.json unless it is up to date or there is nothing to calibrate on
    (and say why in `report.stages['quote gate']`); its figures go to `report.card`."""
    from finetune.pairs import UNANSWERABLE, read_pairs_jsonl
    from finetune.sampling import sample_pairs
    from retrieval.embeddings import load_encoder

    target = run_dir / QUOTE_GATE
    pairs_path = project.tune_dir / TRAIN_PAIRS
    if not pairs_path.is_file():
        report.stages["quote gate"] = "skipped (no synthesized training pairs)"
        return
    documents = project.config.answer.documents
    selector_dir = run_dir / SELECTOR
    inputs = digest(
        file_digest(pairs_path),
        project.config.embedding.model,
        index_id,
        documents,
        read_json(run_dir / SELECTOR_STAMP).get("inputs") if selector_dir.is_dir() else None,
    )
    previous = read_json(target)
    if previous.get("inputs") == inputs:
        report.stages["quote gate"] = "skipped (inputs unchanged)"
        report.card["quote_gate"] = previous.get("bounds", {})
        return
    progress({"stage": "quote gate", "message": "calibrating the quote gate"})
    pairs = [p for p in read_pairs_jsonl(pairs_path) if p.kind != UNANSWERABLE]
    pairs = sample_pairs(pairs, GATE_PAIRS, "none", project.config.raft.seed)
    retriever = open_retriever(project)
    try:
        found = retriever.search_many([p.question for p in pairs], documents * OVERFETCH)
        by_id = {chunk.chunk_id: chunk for chunk in chunks}
        questions, answerable, lacking = gate_cases(pairs, by_id, found, documents)
        encoders = {EMBEDDING_BOUND: retriever.encoder.encode}
        if selector_dir.is_dir():
            config = project.config.embedding
            selector = load_encoder(str(selector_dir), config.device, config.batch_size)
            encoders[SELECTOR_BOUND] = selector.encode
        bounds: dict[str, GateBound | None] = {
            name: calibrate(
                best_quote_scores(questions, answerable, encode),
                best_quote_scores(questions, lacking, encode),
            )
            for name, encode in encoders.items()
        }
    finally:
        retriever.close()
    write_bounds(target, bounds, inputs)
    report.card["quote_gate"] = read_json(target).get("bounds", {})
    report.stages["quote gate"] = f"ran ({len(questions)} training pairs)"

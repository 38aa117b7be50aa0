"""The selector stage of `ragtune tune`: the evidence selector (`finetune.selector`) trained on
the training pairs and saved beside the adapter as RUN/selector/, which the tuned modes quote
with. It runs after the adapter's training, in the main process, and is skipped when its
inputs did not change."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from builder.engine import open_retriever
from builder.project import Project
from builder.stamps import digest, file_digest, read_json, write_json
from builder.tune_layout import SELECTOR, SELECTOR_STAMP, TRAIN_PAIRS, Progress, TuneReport

if TYPE_CHECKING:
    from retrieval.documents import Chunk


def train_selector_stage(
    project: Project,
    run_dir: Path,
    chunks: list[Chunk],
    index_id: str,
    report: TuneReport,
    progress: Progress,
) -> None:
    """Train RUN/selector/ unless it is off, up to date, or cannot be trained (and say why in
    `report.stages['selector']`); its figures go to `report.card['selector']`."""
    from finetune.pairs import read_pairs_jsonl
    from finetune.sampling import sample_pairs
    from finetune.selector import identity_triplets, selector_triplets, train_selector
    from retrieval.embeddings import SentenceTransformerEncoder
    from retrieval.persona import identity

    config = project.config.selector
    target, stamp = run_dir / SELECTOR, run_dir / SELECTOR_STAMP
    pairs_path = project.tune_dir / TRAIN_PAIRS
    if not config.enabled:
        report.stages["selector"] = "off (selector.enabled = false)"
        return
    if not pairs_path.is_file():
        report.stages["selector"] = "skipped (no synthesized training pairs)"
        return
    documents = project.config.answer.documents
    style = project.config.style
    inputs = digest(
        file_digest(pairs_path),
        asdict(config),
        project.config.embedding.model,
        index_id,
        documents,
        *([asdict(style)] if style.persona else []),
    )
    previous = read_json(stamp)
    if previous.get("inputs") == inputs and target.is_dir():
        report.stages["selector"] = "skipped (inputs unchanged)"
        report.card["selector"] = previous.get("result", {})
        return
    retriever = open_retriever(project)
    try:
        encoder = retriever.encoder
        if not isinstance(encoder, SentenceTransformerEncoder):
            report.stages["selector"] = "skipped (this embedding model cannot be fine-tuned)"
            return
        progress({"stage": "selector", "message": "mining sentences for the evidence selector"})

        def shown(questions: list[str]) -> list[list[str]]:
            """The texts of the chunks the engine shows with each question."""
            found = retriever.search_many(questions, documents)
            return [[hit.text for hit in hits[:documents]] for hits in found]

        pairs = sample_pairs(read_pairs_jsonl(pairs_path), config.max_pairs, "none", config.seed)
        chunk_texts = {chunk.chunk_id: chunk.text for chunk in chunks}
        questions = [pair.question for pair in pairs]
        triplets = selector_triplets(pairs, chunk_texts, shown(questions), encoder.encode)
        persona = []
        if style.persona:
            texts = identity(style)
            questions = list(texts.train_questions)
            persona = identity_triplets(questions, texts.card, shown(questions), encoder.encode)
    finally:
        retriever.close()
    from_pairs = len(triplets)
    triplets += persona
    if not triplets:
        report.stages["selector"] = "skipped (no training pair has a sentence to tell apart)"
        return
    progress(
        {
            "stage": "selector",
            "message": f"training the evidence selector on {len(triplets)} triplets",
        }
    )
    partial = run_dir / f"{SELECTOR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    result = train_selector(encoder.path, triplets, partial, config)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    figures = {
        "pairs": len(pairs),
        "triplets": result.triplets,
        "from_pairs": from_pairs,
        "identity": len(persona),
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
    }
    write_json(stamp, {"inputs": inputs, "result": figures})
    report.card["selector"] = figures
    report.stages["selector"] = "ran"

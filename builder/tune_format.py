"""The tune's format stage: training pairs → the training conversations (`tune/train.jsonl`).

RAFT examples (the oracle chunk among distractors the index finds, cited answers), the model's
own answers when `raft.targets = "own"`, the user's `--data` conversations in the engine's RAG
prompt, and identity pairs with a `[style]`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.project import Project
from builder.stamps import digest, file_digest, read_json, up_to_date, write_json
from builder.tune_layout import TRAIN_PAIRS, TRAIN_SET, Progress, TuneError, TuneReport
from builder.tune_style import identity_training, restyled_questions
from builder.tune_targets import own_answer_examples, uses_own_answers

# Part of the format stage's input hash: bump it when the RAFT format or the own-answer rules
# change what they write, so that `ragtune tune` formats again instead of reusing train.jsonl.
FORMAT_VERSION = 2

if TYPE_CHECKING:
    from retrieval.config import AnswerConfig, StyleConfig
    from retrieval.documents import Chunk
    from retrieval.search import Retriever


def format_examples(
    project: Project,
    retriever: Retriever,
    chunks: list[Chunk],
    train_pairs: Path | None,
    user_data: list[Any],
    index_id: str,
    report: TuneReport,
    progress: Progress,
) -> Path:
    from finetune.data import write_examples_jsonl
    from finetune.pairs import read_pairs_jsonl
    from finetune.raft import raft_examples
    from finetune.sampling import sample_pairs
    from retrieval.search import Hit

    config = project.config
    out = project.tune_dir / TRAIN_SET
    stamp = project.tune_dir / "format.json"
    user_key = [asdict(example) for example in user_data]
    inputs = digest(
        FORMAT_VERSION,
        file_digest(train_pairs) if train_pairs else None,
        user_key,
        index_id,
        asdict(config.raft),
        config.answer.documents,
        config.tune.max_examples,
        config.tune.balance,
        config.tune.skip_kinds,
        asdict(config.style),
        # The own answers depend on the model that writes them and on the engine's checks.
        *([asdict(config.generation), _checks(config.answer)] if uses_own_answers(project) else []),
    )
    if up_to_date(stamp, inputs, out):
        report.stages["format"] = "skipped (inputs unchanged)"
        report.format = read_json(stamp).get("report", {})
        return out
    examples = []
    details: dict[str, Any] = {}
    if train_pairs is not None:
        pairs = read_pairs_jsonl(train_pairs)
        skipped = config.tune.skipped_kinds()
        synthesized_count = len(pairs)
        pairs = [p for p in pairs if p.kind not in skipped]
        # A seeded sample keeps the default run within the laptop budget.
        pairs = sample_pairs(pairs, config.tune.max_examples, config.tune.balance, config.raft.seed)
        by_id = {c.chunk_id: c for c in chunks}
        oracles = {p.chunk_id: Hit.of(c) for p in pairs if (c := by_id.get(p.chunk_id)) is not None}
        usable = [p for p in pairs if p.chunk_id in oracles]
        synthesized, raft_report = raft_examples(
            usable,
            oracles,
            retriever.search_many,
            config.answer.documents,
            config.raft,
            config.style,
        )
        details = raft_report.to_dict()
        if uses_own_answers(project):
            synthesized, details["own_answers"] = own_answer_examples(
                project,
                retriever,
                synthesized,
                progress,
                restyled_questions(project, project.tune_dir / TRAIN_PAIRS, usable),
            )
        examples.extend(synthesized)
        details["pairs_by_kind"] = dict(sorted(Counter(p.kind or "?" for p in usable).items()))
        if skipped:
            details["pairs_of_skipped_kinds"] = synthesized_count - len(pairs)
    if user_data:
        examples.extend(_with_context(user_data, retriever, config.answer.documents, config.style))
        details["user_examples"] = len(user_data)
    if not examples:
        raise TuneError("nothing to train on: no synthesized pairs and no --data examples")
    identity = identity_training(project, retriever.search_many, len(examples))
    if identity:
        examples.extend(identity)
        random.Random(config.raft.seed).shuffle(examples)
        details["identity_examples"] = len(identity)
    write_examples_jsonl(examples, out, "messages")
    report.format = details
    write_json(stamp, {"inputs": inputs, "report": details})
    report.stages["format"] = "ran"
    return out


def _with_context(
    examples: list[Any], retriever: Retriever, documents: int, style: StyleConfig
) -> list[Any]:
    """User pairs in the answer engine's RAG prompt: each single-turn question is shown with
    what the project's index retrieves for it, so that `rag+tuned` sees its training layout.
    Multi-turn conversations are kept as written."""
    from finetune.data import ChatExample
    from retrieval.answer import prompt_documents
    from retrieval.prompt import rag_messages

    single = [
        i
        for i, e in enumerate(examples)
        if [m["role"] for m in e.messages if m["role"] != "system"] == ["user", "assistant"]
    ]
    questions = [next(m for m in examples[i].messages if m["role"] == "user") for i in single]
    hits = retriever.search_many([q["content"] for q in questions], documents) if single else []
    wrapped = list(examples)
    for i, question, found in zip(single, questions, hits):
        messages = rag_messages(question["content"], prompt_documents(found), style)
        wrapped[i] = ChatExample([*messages, examples[i].messages[-1]])
    return wrapped


def _checks(answer: AnswerConfig) -> dict:
    """The answer settings an own answer's checks read: all but `own_answers` and
    `quote_gate`, which decide at answer time whether an answer stands against the picked
    sentence or a quote against the gate, checks that training targets do not go through (they
    must hold the pair's key fact instead)."""
    settings = asdict(answer)
    del settings["own_answers"], settings["quote_gate"]
    return settings

"""The cited training targets in the base model's own words (`raft.targets = "own"`,
`finetune.own_answers`): part of the format stage of `ragtune tune`, with the model and the
verification the answer engine uses for `ragtune eval`."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from builder.engine import backend_for, open_llamacpp_generator
from builder.project import Project
from retrieval.generation import load_generator_with_adapter

if TYPE_CHECKING:
    from finetune.data import ChatExample
    from retrieval.search import Retriever

OWN_ANSWERS = "own_answers.jsonl"
"""Every answer the model gave for a cited example, with the verdict: what was kept and why."""

Progress = Callable[[dict[str, Any]], None]


def uses_own_answers(project: Project) -> bool:
    """Whether the format stage replaces cited targets by the model's own answers."""
    return project.config.raft.targets == "own"


def own_answer_examples(
    project: Project,
    retriever: Retriever,
    examples: list[ChatExample],
    progress: Progress,
    styled: Collection[str] = (),
) -> tuple[list[ChatExample], dict[str, Any]]:
    """`examples` with their cited targets in the base model's own words, and the report.
    The examples of the `styled` questions keep their targets: the teacher rewrote them into
    the house voice. The others are answered under the style's system prompt, like `rag`.

    The model answers with the generation settings and no adapter, on the backend for 'tune'
    (`builder.engine.AUTO_BACKEND`: transformers under 'auto', whose batches repeat, so the
    same data give the same targets), in batches of `answer.batch_size`.
    """
    from finetune.own_answers import own_answer_targets
    from finetune.pairs import write_jsonl_atomic
    from retrieval.answer import AnswerEngine

    config = project.config
    started = time.perf_counter()
    progress({"stage": "format", "message": "loading the base model for its own answers"})
    if backend_for(config, None, "tune") == "llamacpp":
        generator = open_llamacpp_generator(config.generation, None)
    else:
        generator, _ = load_generator_with_adapter(config.generation, None)
    # The engine's statistics, threshold and refusal test: targets pass the checks answers do.
    engine = AnswerEngine(
        generator, retriever, config.answer, config.answer.documents, style=config.style
    )
    size = config.answer.batch_size

    def generate(prompts: list[list[dict[str, str]]]) -> list[str]:
        replies: list[str] = []
        for start in range(0, len(prompts), size):
            replies.extend(generator.generate(prompts[start : start + size]))
            progress(
                {
                    "stage": "format",
                    "message": "own answers",
                    "done": len(replies),
                    "total": len(prompts),
                }
            )
        return replies

    result, report, attempts = own_answer_targets(
        examples,
        generate,
        engine.check_claims,
        engine.is_refusal,
        retry=config.raft.own_retry,
        miss=config.raft.own_miss,
        keep=styled,
    )
    write_jsonl_atomic(project.tune_dir / OWN_ANSWERS, attempts)
    # The model's load included: what the user waits for.
    return result, {**report.to_dict(), "seconds": round(time.perf_counter() - started, 1)}

"""The style stage of `ragtune tune`: the training pairs' answers rewritten into the house voice
(`finetune.style_rewrite`), between the split and the format stages, so the held-out evaluation
questions keep their plain reference answers.

    tune/styled_pairs.jsonl, tune/style.json      styled training pairs and the rewrite report
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.project import Project
from builder.stamps import digest, file_digest, read_json, up_to_date, write_json

if TYPE_CHECKING:
    from retrieval.documents import Chunk

STYLED_PAIRS = "styled_pairs.jsonl"
STYLE_VERSION = 2
"""Bump when the rewrite prompt or its filter changes, so the stage runs again."""

Progress = Callable[[dict[str, Any]], None]


def rewrites_targets(project: Project) -> bool:
    """Whether the style asks for anything the training targets must be rewritten for."""
    style = project.config.style
    return bool(style.voice.strip() or style.answer_words or style.language.strip())


def style_examples(project: Project) -> list[str]:
    """The house-voice example answers the style names (none when it names no file).

    Raises:
        StyleExamplesError: the file is missing, unreadable or empty.
    """
    from finetune.style_rewrite import read_examples

    name = project.config.style.examples.strip()
    if not name:
        return []
    path = Path(name)
    return read_examples(path if path.is_absolute() else project.root / path)


def styled_pairs(
    project: Project,
    train_pairs: Path,
    chunks: list[Chunk],
    stages: dict[str, str],
    progress: Progress,
) -> tuple[Path, dict[str, Any]]:
    """The training pairs to format: `train_pairs` itself when the style rewrites nothing, else
    their styled copy (rewritten by the synthesis teacher; skipped when its inputs are unchanged).

    Returns:
        The pairs file and the rewrite report ({} when nothing was rewritten).
    """
    from finetune.pairs import read_pairs_jsonl, write_pairs_jsonl
    from finetune.style_rewrite import rewrite_pairs
    from finetune.teacher import make_teacher
    from retrieval.attribution import TermStatistics

    config = project.config
    if not rewrites_targets(project):
        return train_pairs, {}
    out = project.tune_dir / STYLED_PAIRS
    stamp = project.tune_dir / "style.json"
    examples = style_examples(project)
    synthesis = config.synthesis
    inputs = digest(
        file_digest(train_pairs),
        asdict(config.style),
        examples,
        synthesis.teacher,
        synthesis.teacher_model_name,
        STYLE_VERSION,
    )
    if up_to_date(stamp, inputs, out):
        stages["style"] = "skipped (inputs unchanged)"
        return out, read_json(stamp).get("report", {})
    teacher = make_teacher(
        synthesis.teacher,
        synthesis.teacher_model_name,
        device=config.generation.device,
        batch_size=synthesis.teacher_batch_size,
        max_new_tokens=max(64, 3 * config.style.answer_words),
        seed=synthesis.seed,
        backend=synthesis.teacher_backend,
        gguf=synthesis.teacher_gguf,
    )
    if teacher is None:
        stages["style"] = "skipped (synthesis.teacher = none: nothing rewrites the answers)"
        return train_pairs, {"note": "no teacher: targets not rewritten"}
    progress({"stage": "style", "message": f"rewriting answers in the voice ({teacher.name})"})
    statistics = TermStatistics.from_texts(chunk.text for chunk in chunks)

    def tell(done: int, total: int) -> None:
        progress({"stage": "style", "done": done, "total": total})

    pairs, report = rewrite_pairs(
        read_pairs_jsonl(train_pairs),
        teacher,
        config.style,
        statistics,
        examples,
        progress=tell,
        batch=max(1, synthesis.teacher_batch_size),
    )
    write_pairs_jsonl(out, pairs)
    details = report.to_dict()
    write_json(stamp, {"inputs": inputs, "report": details})
    stages["style"] = f"ran ({report.rewritten} of {report.pairs} answers rewritten)"
    return out, details


def restyled_questions(project: Project, original: Path, pairs: list[Any]) -> set[str]:
    """The questions of `pairs` whose answer the style stage rewrote into the voice (`original`:
    the training pairs before it)."""
    from finetune.pairs import read_pairs_jsonl

    if not rewrites_targets(project) or not original.is_file():
        return set()
    before = {pair.question: pair.answer for pair in read_pairs_jsonl(original)}
    return {p.question for p in pairs if before.get(p.question, p.answer) != p.answer}


def identity_training(project: Project, search_many: Any, other_examples: int) -> list[Any]:
    """The persona's identity conversations for the training set (none without a persona)."""
    from finetune.identity_pairs import identity_count, identity_examples
    from retrieval.persona import identity

    style = project.config.style
    if not style.persona:
        return []
    texts = identity(style)
    count = identity_count(style, other_examples, texts)
    return identity_examples(
        texts,
        style,
        search_many,
        project.config.answer.documents,
        count,
        seed=project.config.raft.seed,
    )

"""Run an A/B evaluation: every question through every mode of one answer engine, scored,
summarized with paired bootstrap intervals, and written as report.json + report.html."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.config import EvalConfig
from eval.metrics import extract_label, score_answer
from eval.questions import EvalQuestion
from eval.report import per_question_records, summarize, write_report
from retrieval.answer import AnswerEngine

Progress = Callable[[str, int, int], None]


@dataclass
class EvalResult:
    summary: dict[str, Any]
    json_path: Path
    html_path: Path
    modes: list[str]
    notes: list[str]


def choose_modes(engine: AnswerEngine, config: EvalConfig) -> tuple[list[str], list[str]]:
    """The modes to compare: the configured ones, less the tuned modes when the project has no
    adapter yet and the user kept the default list (said in a note).

    Raises:
        ModeError: a mode the user named explicitly cannot be served.
    """
    wanted = config.mode_list()
    if config.modes == EvalConfig().modes:
        available = [m for m in wanted if m in engine.modes]
        skipped = [m for m in wanted if m not in available]
        notes = (
            [f"skipped {', '.join(skipped)}: no tuned adapter yet (run `ragtune tune`)"]
            if skipped
            else []
        )
        return available, notes
    return [engine.check_mode(mode) for mode in wanted], []


def evaluate(
    engine: AnswerEngine,
    questions: Sequence[EvalQuestion],
    config: EvalConfig,
    out_dir: Path,
    meta: dict[str, Any],
    *,
    label_extractor: Callable[[str], str | None] = extract_label,
    progress: Progress | None = None,
) -> EvalResult:
    """Answer, score and report.

    Args:
        engine: the project's answer engine (one model load for every mode).
        questions: the evaluation questions.
        config: modes, bootstrap settings, judge.
        out_dir: where report.json and report.html go.
        meta: what is evaluated (shown at the top of the report).
        label_extractor: maps a free-form answer to a label for label-style questions.
        progress: called with (mode, answered, total).
    """
    from eval.judge import make_judge

    modes, notes = choose_modes(engine, config)
    if config.max_questions:
        questions = questions[: config.max_questions]
    judge = make_judge(config.judge)
    answers_by_mode: dict[str, list[Any]] = {}
    rows_by_mode: dict[str, list[dict[str, float | None]]] = {}
    seconds: dict[str, float] = {}
    for mode in modes:
        began = time.monotonic()
        answers = engine.answer_many(
            [q.question for q in questions],
            mode,
            progress=(lambda done, total, m=mode: progress(m, done, total)) if progress else None,
        )
        seconds[mode] = round(time.monotonic() - began, 1)
        judged = (
            judge.score_batch(
                [(q.question, q.answer, a.answer) for q, a in zip(questions, answers)]
            )
            if judge
            else [None] * len(answers)
        )
        answers_by_mode[mode] = [a.to_dict(with_retrieved=True) for a in answers]
        rows_by_mode[mode] = [
            score_answer(
                q,
                a,
                k=engine.documents,
                faithfulness_threshold=config.faithfulness_threshold,
                label_extractor=label_extractor,
                judge_score=score,
                statistics=engine.statistics,
                refusal=engine.refusal,
            )
            for q, a, score in zip(questions, answers_by_mode[mode], judged)
        ]
    summary = summarize(
        rows_by_mode,
        samples=config.bootstrap_samples,
        seed=config.seed,
        level=config.confidence,
    )
    full_meta = {
        **meta,
        "questions": len(questions),
        "modes": modes,
        "documents_per_prompt": engine.documents,
        "faithfulness_threshold": config.faithfulness_threshold,
        "judge": config.judge or None,
        "seconds_per_mode": seconds,
        "notes": notes,
    }
    style = None
    if engine.style is not None:
        from eval.style import style_measures

        style = style_measures(engine, engine.style, modes, answers_by_mode, judge)
    records = per_question_records(questions, answers_by_mode, rows_by_mode)
    json_path, html_path = write_report(out_dir, summary, records, full_meta, style)
    return EvalResult(summary, json_path, html_path, modes, notes)

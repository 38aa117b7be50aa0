"""The `ragtune eval` subcommand: the A/B report of base / rag / tuned / rag+tuned."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.markup import escape

from builder.config import ConfigError
from builder.console import err, print_style_warnings, progress_bars, quiet_libraries
from builder.project import Project
from builder.reports import LATEST_REPORT
from builder.tune_layout import EVAL_QUESTIONS


def default_questions(project: Project) -> Path:
    path = project.tune_dir / EVAL_QUESTIONS
    if not path.is_file():
        raise ConfigError(
            str(project.root),
            [
                "no evaluation questions: run `ragtune tune PROJECT` (it holds some out), or "
                'give --questions FILE.jsonl with {"question", "answer", "sources"} lines'
            ],
        )
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    from builder.project import open_project
    from eval.questions import EvalDataError, read_eval_questions

    project = open_project(args.project, args.set)
    if args.modes:
        project.config.eval.modes = args.modes
        problems = project.config.eval.problems()
        if problems:
            raise ConfigError("--modes", problems)
    path = args.questions or default_questions(project)
    source = (
        f"Questions: yours, from {path}."
        if args.questions
        else f"Questions: the held-out synthetic split of `ragtune tune` ({path}). They passed "
        "the round-trip retrieval filter, so retrieval figures on them are optimistic; give "
        "--questions FILE for questions written by people."
    )
    try:
        questions = read_eval_questions(path)
    except EvalDataError as error:
        raise ConfigError(str(path), error.problems) from error
    print_style_warnings(project.config.style)
    quiet_libraries()
    from builder.engine import adapter_folder, backend_for, open_engine
    from eval.report import format_summary_table
    from eval.run import evaluate

    engine = open_engine(project, args.adapter, use="eval")
    adapter = adapter_folder(project, args.adapter)
    name = time.strftime("eval-%Y%m%d-%H%M%S")
    out_dir = project.reports_dir / name
    meta = {
        "questions_source": source,
        "project": str(project.root),
        "questions_file": str(path),
        "generator": project.config.generation.model,
        "adapter": str(adapter) if adapter is not None else "none",
        "backend": backend_for(project.config, adapter, "eval"),
    }
    with progress_bars() as progress:
        tasks: dict[str, int] = {}

        def tell(mode: str, done: int, total: int) -> None:
            if mode not in tasks:
                tasks[mode] = progress.add_task(f"answering ({mode})", total=total)
            progress.update(tasks[mode], completed=done, total=total)

        result = evaluate(engine, questions, project.config.eval, out_dir, meta, progress=tell)
    from retrieval.index import write_atomic

    write_atomic(project.reports_dir / LATEST_REPORT, f"{name}\n".encode())
    for note in result.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    if args.json:
        print(json.dumps(result.summary, ensure_ascii=False))
    else:
        print(source)
        print(format_summary_table(result.summary))
        from eval.report import sentences_in_words

        for sentence in sentences_in_words(result.summary):
            print(f"- {sentence}")
    err.print(f"report: {escape(str(result.html_path))} (and report.json)")
    return 0


def add_commands(add) -> None:
    """Register `eval` with the CLI's `add(name, help, handler)` helper."""
    evaluate = add("eval", "A/B evaluation: base vs RAG vs tuned vs RAG+tuned.", cmd_eval)
    evaluate.add_argument(
        "--questions",
        type=Path,
        help='JSONL of {"question", "answer", "sources"?}; default: the held-out split of '
        "`ragtune tune`",
    )
    evaluate.add_argument("--modes", help="comma-separated, default base,rag,tuned,rag+tuned")
    evaluate.add_argument(
        "--adapter", help="adapter folder to use instead of the project's current one, or 'none'"
    )
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")

"""The `ragtune` command: one subcommand per pipeline step."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import ClassVar

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from builder.config import ConfigError
from builder.console import err, progress_bars, quiet_libraries, run_command


class _Bars:
    """A rich progress bar per pipeline stage."""

    LABELS: ClassVar[dict[str, str]] = {
        "scan": "hashing files",
        "load": "loading + chunking",
        "embed": "embedding chunks",
        "index": "writing indexes",
    }

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(self.LABELS.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def cmd_build(args: argparse.Namespace) -> int:
    from builder.build import BuildError, build
    from builder.project import open_project, record_docs
    from builder.ray_engine import RayEngineError

    project = open_project(args.project, args.set, docs=args.docs)
    if not project.docs_dir.is_dir():
        err.print(
            f"[red]error:[/] documents folder {escape(str(project.docs_dir))} not found; "
            "pass --docs DIR or set docs in ragtune.toml"
        )
        return 2
    quiet_libraries()
    if args.docs is not None or not project.config_path.exists():
        record_docs(args.project, args.docs)
    try:
        with progress_bars() as progress:
            report = build(
                project,
                full=args.full,
                progress=_Bars(progress),
                engine=args.engine,
                workers=args.workers,
            )
    except BuildError as error:
        _print_skips(error.report)
        err.print(f"[red]error:[/] {escape(str(error))}")
        return 1
    except RayEngineError as error:
        err.print(f"[red]error:[/] {escape(str(error))}")
        return 2
    _print_skips(report)
    for source in report.kept_previous:
        err.print(f"[yellow]kept previous version[/] of {escape(source)}")
    if report.changed:
        err.print(
            f"added {len(report.added)}, updated {len(report.updated)}, removed "
            f"{len(report.removed)}, unchanged {len(report.unchanged)}, skipped "
            f"{len(report.skipped)} files; embedded {report.chunks_embedded} chunks"
        )
    else:
        err.print(
            f"index is up to date ({len(report.unchanged)} files unchanged, "
            f"{len(report.skipped)} skipped)"
        )
    err.print(
        f"[green]index[/] {escape(str(project.index_root))} (generation {report.generation}): "
        f"{report.total_files} files, {report.total_chunks} chunks, {report.index_kind} vectors "
        f"+ BM25, in {report.seconds:.1f}s"
    )
    if report.vector_recall is not None:
        err.print(
            f"{report.index_kind} vectors: recall@10 {report.vector_recall:.3f} against exact "
            "search (stored vectors as queries)"
        )
    return 0


def _print_skips(report) -> None:
    for skip in report.skipped:
        err.print(f"[yellow]skipped[/] {escape(skip.source)}: {escape(skip.reason)}")


def _read_questions(path: Path) -> list[dict]:
    """Read a JSONL question file; every bad line is reported, by number, before any model loads."""
    from retrieval.jsonl import decode_json_lines, read_utf8

    try:
        text = read_utf8(path)
    except (OSError, ValueError) as error:
        raise ConfigError(str(path), [f"cannot read: {error}"]) from error
    rows: list[dict] = []
    problems: list[str] = []
    for number, row in decode_json_lines(text, problems):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("question"), str)
            or not row["question"].strip()
        ):
            problems.append(f'line {number}: expected an object with a non-empty "question" string')
            continue
        rows.append(row)
    if problems:
        raise ConfigError(str(path), problems)
    if not rows:
        raise ConfigError(str(path), ["no questions in the file"])
    return rows


def cmd_retrieve(args: argparse.Namespace) -> int:
    from builder.project import open_project

    project = open_project(args.project, args.set)
    if (args.question is None) == (args.questions is None):
        err.print("[red]error:[/] give one question, or --questions FILE.jsonl")
        return 2
    rows = _read_questions(args.questions) if args.questions else [{"question": args.question}]
    quiet_libraries()
    from builder.engine import open_retriever

    config = project.config
    retriever = open_retriever(project)
    try:
        k = args.k or config.retrieval.top_k
        results = retriever.search_many([row["question"] for row in rows], k)
    finally:
        retriever.close()
    out = Console(highlight=False, soft_wrap=True)
    for row, hits in zip(rows, results):
        if args.json:
            print(
                json.dumps(
                    {"question": row["question"], "hits": [h.to_dict() for h in hits]},
                    ensure_ascii=False,
                )
            )
            continue
        out.print(f"[bold]{escape(row['question'])}[/]")
        for rank, hit in enumerate(hits, start=1):
            where = (
                hit.source
                + (f" p.{hit.page}" if hit.page else "")
                + (f" § {hit.section}" if hit.section else "")
            )
            snippet = " ".join(hit.text.split())
            out.print(f"  {rank}. [cyan]{escape(where)}[/] ({hit.score:.4f})")
            out.print(f"     {snippet[:240]}{'…' if len(snippet) > 240 else ''}", markup=False)
    gold = [(row, hits) for row, hits in zip(rows, results) if row.get("source")]
    if gold:
        found = sum(any(h.source == row["source"] for h in hits) for row, hits in gold)
        err.print(f"gold source in the top {k}: {found}/{len(gold)} ({found / len(gold):.0%})")
    return 0


def _where(item) -> str:
    return (
        item.source
        + (f" p.{item.page}" if item.page else "")
        + (f" § {item.section}" if item.section else "")
    )


def _print_claims(out: Console, answer) -> None:
    """After a streamed answer: the verified version when it differs from what streamed."""
    if answer.quoted:
        out.print("[dim]quoted from the shown passage that best answers the question:[/]")
    if answer.gated:
        out.print("[dim]no shown passage was close enough to the question to quote:[/]")
    if answer.answer != answer.model_answer or answer.unsupported_claims:
        out.print(f"[bold]verified:[/] {escape(answer.marked_text())}")


def _print_answer(out: Console, answer) -> None:
    for citation in answer.citations:
        out.print(f"  [{citation.n}] [cyan]{escape(_where(citation))}[/]")
        out.print(f"      {citation.snippet}", markup=False)
    if answer.dropped_citations:
        out.print(
            f"  [yellow]{answer.dropped_citations} citation(s) pointed at no retrieved "
            "chunk and were removed[/]"
        )


def cmd_ask(args: argparse.Namespace) -> int:
    from builder.project import open_project

    project = open_project(args.project, args.set)
    if (args.question is None) == (args.questions is None):
        err.print("[red]error:[/] give one question, or --questions FILE.jsonl")
        return 2
    rows = _read_questions(args.questions) if args.questions else [{"question": args.question}]
    quiet_libraries()
    from builder.engine import open_engine
    from retrieval.answer_record import Answer

    engine = open_engine(project, args.adapter)
    mode = engine.check_mode(args.mode)
    out = Console(highlight=False, soft_wrap=True)
    if not args.json and len(rows) == 1:
        err.print(f"[dim]mode: {mode}[/]")
        for piece in engine.stream(rows[0]["question"], mode):
            if isinstance(piece, Answer):
                out.print()
                _print_claims(out, piece)
                _print_answer(out, piece)
            else:
                out.print(piece, end="", markup=False)
        return 0
    with progress_bars() as progress:
        task = progress.add_task(f"answering ({mode})", total=len(rows))
        answers = engine.answer_many(
            [row["question"] for row in rows],
            mode,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for answer in answers:
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False))
            continue
        out.print(f"[bold]{escape(answer.question)}[/]")
        out.print(answer.marked_text(), markup=False)
        _print_answer(out, answer)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from builder.project import open_project

    project = open_project(args.project, args.set)
    if args.max_queue < 1:
        err.print(f"[red]error:[/] --max-queue must be at least 1, got {args.max_queue}")
        return 2
    if args.timeout <= 0:
        err.print(f"[red]error:[/] --timeout must be positive, got {args.timeout}")
        return 2
    if args.api_key_file is not None:
        try:
            api_key = args.api_key_file.read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as error:
            err.print(f"[red]error:[/] cannot read the API key file: {escape(str(error))}")
            return 2
        if api_key is None:
            err.print(f"[red]error:[/] the API key file {escape(str(args.api_key_file))} is empty")
            return 2
    else:
        api_key = args.api_key or os.environ.get("RAGTUNE_API_KEY") or None
    if api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning:[/] serving on {escape(args.host)} without an API key: anyone who "
            "can reach this port can query your documents; set RAGTUNE_API_KEY"
        )
    # The server is an app: it runs as its own program (nothing imports apps/), in place of
    # this process so that Ctrl-C and signals reach it. The key travels in the environment,
    # where other users' `ps` cannot read it.
    command = [sys.executable, "-m", "apps.server", str(project.root)]
    command += ["--host", args.host, "--port", str(args.port), "--max-queue", str(args.max_queue)]
    command += ["--timeout", str(args.timeout)]
    if args.adapter:
        command += ["--adapter", args.adapter]
    for origin in args.allow_origin:
        command += ["--allow-origin", origin]
    for host in args.allow_host:
        command += ["--allow-host", host]
    for override in args.set:
        command += ["--set", override]
    environment = dict(os.environ)
    if api_key:
        environment["RAGTUNE_API_KEY"] = api_key
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, environment)
    return 0  # not reached


def cmd_sample(args: argparse.Namespace) -> int:
    from builder.sample_corpus import SAMPLE_QUESTIONS_PATH, write_sample_corpus

    written = write_sample_corpus(args.dest)
    err.print(
        f"wrote {len(written)} sample documents to {escape(str(args.dest))}; "
        f"gold questions: {SAMPLE_QUESTIONS_PATH}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Resolve (and convert, once) the configured models, then load each to prove it works."""
    from builder.project import open_project

    project = open_project(args.project, args.set)
    quiet_libraries()
    from retrieval.embeddings import load_encoder
    from retrieval.models import load_generator

    config = project.config
    encoder = load_encoder(config.embedding.model, config.embedding.device)
    encoder.load()
    err.print(f"embedding  {config.embedding.model} → {encoder.path} ({encoder.dim} dims)")
    model, _tokenizer, path = load_generator(config.generation)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    err.print(f"generator  {config.generation.model} → {path} ({params:.0f}M parameters)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragtune", description="Turn a folder of documents into a cited assistant."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, handler, project: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if project:
            sub.add_argument("project", type=Path, help="project folder (holds ragtune.toml)")
            sub.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="SECTION.KEY=VALUE",
                help="override a setting for this run, e.g. --set retrieval.top_k=8",
            )
        sub.set_defaults(handler=handler)
        return sub

    build_cmd = add("build", "Index a documents folder (incremental).", cmd_build)
    build_cmd.add_argument("--docs", type=Path, help="documents folder (recorded in ragtune.toml)")
    build_cmd.add_argument("--full", action="store_true", help="re-embed every file")
    build_cmd.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default): parse workers and one model here; ray: Ray Data tasks and an "
        "actor pool of embedding models (pip install -e '.[ray]')",
    )
    build_cmd.add_argument(
        "--workers",
        type=int,
        default=2,
        help="--engine ray: embedding actors, one model each (default 2)",
    )

    retrieve = add("retrieve", "Show the chunks retrieved for questions.", cmd_retrieve)
    retrieve.add_argument("question", nargs="?", help="the question")
    retrieve.add_argument("--questions", type=Path, help='JSONL file of {"question": ...} lines')
    retrieve.add_argument("-k", type=int, default=None, help="hits per question")
    retrieve.add_argument("--json", action="store_true", help="one JSON object per question")

    ask = add("ask", "Answer questions from the documents, with citations.", cmd_ask)
    ask.add_argument("question", nargs="?", help="the question")
    ask.add_argument("--questions", type=Path, help='JSONL file of {"question": ...} lines')
    ask.add_argument(
        "--mode",
        choices=["base", "rag", "tuned", "rag+tuned"],
        help="default: rag+tuned when the project has a tuned adapter, else rag",
    )
    ask.add_argument(
        "--adapter", help="adapter folder to use instead of the project's current one, or 'none'"
    )
    ask.add_argument("--json", action="store_true", help="one JSON object per question")

    add("models", "Prepare and check the configured models.", cmd_models)

    from builder.app_cli import add_commands as add_app_commands
    from builder.eval_cli import add_commands as add_eval_commands
    from builder.tune_cli import add_commands as add_tune_commands

    add_tune_commands(add)
    add_eval_commands(add)
    add_app_commands(add)

    serve = add("serve", "Answer over an OpenAI-compatible HTTP API.", cmd_serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY'; prefer $RAGTUNE_API_KEY or --api-key-file, "
        "since other users' `ps` shows this flag (unset: $RAGTUNE_API_KEY; neither: no key)",
    )
    serve.add_argument(
        "--api-key-file",
        type=Path,
        help="read the API key from this file (whitespace around it ignored; keep it private)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a request may take, queue wait included, before it gets 504 (default 120)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="a web page origin (scheme://host[:port]) allowed to call the API; '*': any",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="a Host name accepted on loopback besides localhost, 127.0.0.1 and ::1",
    )
    serve.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="requests held at once (answered one at a time); beyond it clients get 429",
    )
    serve.add_argument(
        "--adapter", help="adapter folder to use instead of the project's current one, or 'none'"
    )

    sample = add("sample", "Write the bundled sample corpus.", cmd_sample, project=False)
    sample.add_argument("dest", type=Path, help="folder to write the documents into")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())

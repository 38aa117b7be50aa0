"""Synthesis benchmark: how many training pairs the data engine keeps from a corpus, of which
types, from which generator, how many files they cover, and how fast. Prints a table.

For each built project (`ragtune build` first), the synthesis stage of `ragtune tune` runs
exactly as the project's config sets it (`finetune.synthesize.synthesize`: structural pairs, the
teacher's, the shared filters with the round trip through the project's own index, the
embedding near-duplicate check and the base model's consistency check) and the table gives:
kept pairs per 100 chunks and per minute of synthesis, per source (structural / teacher) and per
type, the share of files with at least one kept pair, and what each filter dropped.

--smoke: the first documents of the bundled sample corpus, built with the real embedding model,
and a tiny random Llama (tests/tiny_models.py) as teacher and base model: it checks the script,
its figures mean nothing.

--structural: the structural generator alone, before any filter and without a model (seconds):
pairs per type and the files they cover, to see what the layout rules read from a corpus.

Usage:
    python bench/synthesis.py PROJECT [PROJECT ...] [--teacher-questions N] [--structural]
                              [--smoke]
    python bench/synthesis.py --pubmedqa ../shared/data/pubmedqa [--abstracts 82]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from machine import OtherLoad  # noqa: E402
from smoke import TINY_LABEL, single_threaded, small_sample_corpus, tiny_generator  # noqa: E402

from builder.build import build  # noqa: E402
from builder.engine import open_retriever  # noqa: E402
from builder.project import open_project  # noqa: E402
from builder.tune import synthesis_models  # noqa: E402
from finetune.filters import retriever_search  # noqa: E402
from finetune.generators import structural  # noqa: E402
from finetune.pairs import RULES  # noqa: E402
from finetune.synthesize import synthesize  # noqa: E402


def measure(root: Path, teacher_questions: int | None) -> dict:
    """Run the synthesis stage of one built project; its report, timing and sizes."""
    project = open_project(root)
    if teacher_questions is not None:
        project.config.synthesis = project.config.synthesis.asking_exactly(teacher_questions)
    config = project.config.synthesis
    retriever = open_retriever(project)
    chunks = list(retriever.index.store.iter_chunks())
    teacher, consistent = synthesis_models(project)
    if teacher is not None and hasattr(teacher, "load"):
        teacher.load()  # loading is not synthesis
    started = time.perf_counter()
    _, report = synthesize(
        chunks,
        config,
        retriever_search(retriever),
        teacher,
        None,
        retriever.encoder.encode,
        consistent,
    )
    seconds = time.perf_counter() - started
    retriever.close()
    return {
        "name": root.name,
        "chunks": len(chunks),
        "report": report,
        "seconds": seconds,
        "teacher": config.teacher if teacher else "none",
        "style": config.resolved_teacher_style() if teacher else "-",
        "questions": config.teacher_budget(len(chunks)) if teacher else 0,
    }


def structural_rows(root: Path) -> list[tuple[str, str, str]]:
    """The structural generator's pairs of one built project, before the filters."""
    project = open_project(root)
    retriever = open_retriever(project)
    chunks = list(retriever.index.store.iter_chunks())
    retriever.close()
    started = time.perf_counter()
    pairs = structural.generate(chunks, project.config.synthesis)
    seconds = time.perf_counter() - started
    files = {chunk.source for chunk in chunks}
    table = [
        ("corpus: chunks, files", f"{len(chunks)}, {len(files)}", root.name),
        ("structural pairs, before the filters", str(len(pairs)), f"{seconds:.1f} s"),
    ]
    for kind, count in sorted(Counter(pair.kind for pair in pairs).items()):
        table.append((f"  type {kind}", str(count), ""))
    covered = {pair.source for pair in pairs}
    table.append(("files with a pair", f"{len(covered)}/{len(files)}", ""))
    return table


def rows(run: dict) -> list[tuple[str, str, str]]:
    report, chunks, minutes = run["report"], run["chunks"], run["seconds"] / 60
    teacher_kept = sum(n for name, n in report.kept_by.items() if name != RULES)
    teacher_generated = sum(n for name, n in report.generated_by.items() if name != RULES)

    def rate(kept: int) -> str:
        return f"{100 * kept / max(chunks, 1):.1f} / {kept / max(minutes, 1e-9):.1f}"

    table = [
        ("corpus: chunks, files", f"{chunks}, {report.files}", run["name"]),
        (
            "teacher, style, questions asked",
            f"{run['style']}, {run['questions']}",
            run["teacher"],
        ),
        ("kept pairs (of generated)", f"{report.kept} ({report.generated})", ""),
        ("kept per 100 chunks / per minute", rate(report.kept), f"{run['seconds']:.0f} s"),
        (
            "  structural: kept (generated)",
            f"{report.kept_by.get(RULES, 0)} ({report.generated_by.get(RULES, 0)})",
            "per 100 chunks / per minute: " + rate(report.kept_by.get(RULES, 0)),
        ),
        (
            "  teacher: kept (generated)",
            f"{teacher_kept} ({teacher_generated})",
            f"{report.unparsable} replies unparsable; per 100 chunks / per minute: "
            + rate(teacher_kept),
        ),
    ]
    for kind, generated in report.generated_by_kind.items():
        kept = report.kept_by_kind.get(kind, 0)
        table.append((f"  type {kind}: kept (generated)", f"{kept} ({generated})", ""))
    covered = report.files_covered / max(report.files, 1)
    table.append(
        (
            "files with a kept pair",
            f"{100 * covered:.0f}%",
            f"{report.files_covered}/{report.files}",
        )
    )
    for reason, count in report.dropped.items():
        table.append((f"  dropped: {reason}", str(count), ""))
    return table


def print_table(table: list[tuple[str, str, str]]) -> None:
    width = max(len(row[0]) for row in table)
    value_width = max(len(row[1]) for row in table)
    print(f"{'measure':<{width}}  {'value':>{value_width}}  note")
    for label, value, note in table:
        print(f"{label:<{width}}  {value:>{value_width}}  {note}".rstrip())


def smoke_project(work: Path) -> Path:
    """The first sample documents, built, with a tiny random teacher and base model."""
    docs = work / "docs"
    small_sample_corpus(docs)
    model = tiny_generator(work / "tiny")
    root = work / "project"
    settings = [
        f"generation.model={model}",
        f"synthesis.teacher={model}",
        "synthesis.teacher_questions=4",
        "synthesis.teacher_style=answer_first",
        "generation.device=cpu",
        "embedding.device=cpu",
    ]
    project = open_project(root, settings, docs=docs)
    project.save_config()
    build(project)
    return root


def pubmedqa_project(data: Path, abstracts: int, root: Path) -> Path:
    """A project over the first `abstracts` PubMedQA abstracts by PMID (a corpus this project
    did not write; 82 give about 500 chunks), built once and reused."""
    from pubmedqa import read_pubmedqa, write_corpus

    if not (root / "index").is_dir():
        corpus, _ = read_pubmedqa(data)
        chosen = sorted(corpus)[:abstracts]
        write_corpus({pmid: corpus[pmid] for pmid in chosen}, root / "docs")
        project = open_project(root, [], docs=root / "docs")
        project.save_config()
        build(project)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("projects", nargs="*", type=Path, help="built ragtune projects")
    parser.add_argument(
        "--teacher-questions",
        type=int,
        help="ask the teacher exactly N questions (default: the config)",
    )
    parser.add_argument(
        "--pubmedqa",
        type=Path,
        metavar="DATA",
        help="also build and measure a project over PubMedQA abstracts (../shared/data/pubmedqa)",
    )
    parser.add_argument("--abstracts", type=int, default=82, help="abstracts for --pubmedqa")
    parser.add_argument(
        "--pubmedqa-project",
        type=Path,
        default=Path("pubmedqa-synthesis"),
        help="where to build it",
    )
    parser.add_argument(
        "--structural",
        action="store_true",
        help="only the structural generator, before the filters (no model)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny corpus and tiny models")
    args = parser.parse_args()
    if not args.smoke and not args.projects and not args.pubmedqa:
        parser.error("give at least one built project (or --pubmedqa DATA, or --smoke)")
    machine = OtherLoad()
    with tempfile.TemporaryDirectory() as temporary:
        projects = list(args.projects)
        if args.pubmedqa:
            projects.append(pubmedqa_project(args.pubmedqa, args.abstracts, args.pubmedqa_project))
        if args.smoke:
            single_threaded()
            projects = [smoke_project(Path(temporary))]
            print(f"smoke run: teacher and base model are {TINY_LABEL}")
        for root in projects:
            if args.structural:
                print_table([*structural_rows(root), machine.row()])
            else:
                print_table([*rows(measure(root, args.teacher_questions)), machine.row()])
            print()


if __name__ == "__main__":
    main()

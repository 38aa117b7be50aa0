"""What the benchmarks' --smoke modes share: a tiny random generator and a small corpus, so that
each script runs end to end in seconds. Their figures say only that the script works."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY_LABEL = "a tiny random Llama (tests/tiny_models.py)"
SMOKE_DOCUMENTS = 4
"""Documents of the sample corpus that a smoke run keeps (the first ones by path)."""


def single_threaded() -> None:
    """Run torch (here and in child processes) on one thread. On a shared 2-core machine, two
    OpenMP threads that wait for each other at every operation made the tiny models' runs up to
    100x slower whenever another process held a core; one thread does not wait. Smoke figures are
    not measurements, so nothing is lost."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def tiny_generator(folder: Path) -> Path:
    """Save the tests' 2-layer, 16-wide random Llama with its ChatML tokenizer into `folder`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_llama

    return build_tiny_llama(folder)


def small_sample_corpus(dest: Path, keep: int = SMOKE_DOCUMENTS) -> list[Path]:
    """The first `keep` documents of the sample corpus (a pdf among them), the rest removed."""
    from builder.sample_corpus import write_sample_corpus

    written = write_sample_corpus(dest)
    pdfs = [path for path in written if path.suffix == ".pdf"][:1]
    kept = pdfs + [path for path in written if path not in pdfs][: keep - len(pdfs)]
    for path in written:
        if path not in kept:
            path.unlink()
    for folder in sorted(dest.rglob("*"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            shutil.rmtree(folder)
    return kept


def build_sample(work: Path, settings: list[str], smoke: bool) -> Path:
    """The sample corpus (a few documents of it with --smoke), built in this process with
    `settings` saved in its ragtune.toml."""
    from builder.build import build
    from builder.project import open_project
    from builder.sample_corpus import write_sample_corpus

    root = work / "project"
    if smoke:
        small_sample_corpus(root / "docs")
    else:
        write_sample_corpus(root / "docs")
    print("building the sample project …", file=sys.stderr)
    project = open_project(root, settings, docs=root / "docs")
    project.save_config()
    build(project)
    return root


def bench_project(args: argparse.Namespace, work: Path, settings: list[str]):
    """The project a benchmark of `project_parser` runs on, opened with `settings`: --project,
    or else the sample corpus built in `work` (a few documents and the tiny generator with
    --smoke)."""
    from builder.project import open_project

    if args.smoke:
        settings = [*settings, f"generation.model={tiny_generator(work / 'tiny-llama')}"]
    root = args.project or build_sample(work, settings, args.smoke)
    return open_project(root, settings)


def project_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark over one project's gold questions."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a built project (default: build the sample)")
    parser.add_argument("--questions", type=Path, help="gold questions (default: the sample's)")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model, 4 documents")
    return parser

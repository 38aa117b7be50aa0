"""Teacher backend benchmark: the embedded teacher writing the answer-first questions of the
synthesis stage (`finetune.generators.answer_first`: the prompts `ragtune tune` sends, in its
batches of `synthesis.teacher_batch_size`) in transformers and in llama.cpp, in one run on the
same prompts. Prints a table: load seconds, seconds per question, questions that parse, and the
share of greedy replies the two backends write identically (the GGUF is Q4_1, the transformers
model fp32: some replies differ).

The prompts come from the sample corpus (`ragtune sample`), built with the real embedding model.
The backends run in turns on halves of the batches (A B B A), so that a change in the machine's
load during the run falls on both.

--smoke: 4 questions, one batch each: seconds; its figures only show that the script works.

Usage:
    python bench/teacher.py [--questions 64] [--batch 16] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from machine import OtherLoad  # noqa: E402

from builder.build import build  # noqa: E402
from builder.project import open_project  # noqa: E402
from builder.sample_corpus import write_sample_corpus  # noqa: E402
from finetune.generators.answer_first import build_prompt, choose_items, parse_question  # noqa: E402
from finetune.synthesis_config import TEACHER_BACKENDS, SynthesisConfig  # noqa: E402
from finetune.teacher import make_teacher  # noqa: E402
from retrieval.config import IndexConfig  # noqa: E402
from retrieval.index import open_index  # noqa: E402

MAX_NEW_TOKENS = 40  # what builder.tune asks of an answer-first teacher


def sample_prompts(work: Path, count: int) -> list:
    docs = work / "docs"
    write_sample_corpus(docs)
    project = open_project(work / "project", [], docs=docs)
    build(project)
    index = open_index(project.index_root, IndexConfig())
    try:
        chunks = list(index.store.iter_chunks())
    finally:
        index.close()
    items = choose_items(chunks, count, SynthesisConfig().max_pairs_per_chunk)
    return [build_prompt(item) for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch", type=int, default=SynthesisConfig().teacher_batch_size)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    questions, batch = (4, 4) if args.smoke else (args.questions, args.batch)
    load = OtherLoad()
    with tempfile.TemporaryDirectory() as folder:
        prompts = sample_prompts(Path(folder), questions)
    print(f"{len(prompts)} answer-first prompts from the sample corpus", file=sys.stderr)
    teacher = SynthesisConfig().teacher
    teachers, load_s = {}, {}
    for backend in TEACHER_BACKENDS:
        began = time.perf_counter()
        teachers[backend] = make_teacher(
            teacher, device="cpu", batch_size=batch, max_new_tokens=MAX_NEW_TOKENS, backend=backend
        )
        teachers[backend].load()
        load_s[backend] = time.perf_counter() - began
    batches = [prompts[i : i + batch] for i in range(0, len(prompts), batch)]
    half = (len(batches) + 1) // 2
    order = [*TEACHER_BACKENDS, *reversed(TEACHER_BACKENDS)]  # A B B A
    replies: dict[str, list] = {b: [None] * len(batches) for b in TEACHER_BACKENDS}
    seconds = dict.fromkeys(TEACHER_BACKENDS, 0.0)
    for turn, backend in enumerate(order):
        chosen = range(half) if turn < 2 else range(half, len(batches))
        for number in chosen:
            began = time.perf_counter()
            replies[backend][number] = [r[0] for r in teachers[backend].generate(batches[number])]
            seconds[backend] += time.perf_counter() - began
    flat = {b: [reply for part in replies[b] for reply in part] for b in TEACHER_BACKENDS}
    same = sum(a.strip() == b.strip() for a, b in zip(*flat.values())) / len(prompts)
    rows = [("measure", *TEACHER_BACKENDS)]
    rows.append(("load (s)", *(f"{load_s[b]:.1f}" for b in TEACHER_BACKENDS)))
    rows.append(("s per question", *(f"{seconds[b] / len(prompts):.2f}" for b in TEACHER_BACKENDS)))
    rows.append(
        (
            "replies holding a question",
            *(
                f"{sum(parse_question(r) is not None for r in flat[b]) / len(prompts):.2f}"
                for b in TEACHER_BACKENDS
            ),
        )
    )
    ratio = seconds["transformers"] / seconds["llamacpp"] if seconds["llamacpp"] else float("nan")
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    print(f"llama.cpp speed-up (transformers s / llama.cpp s): {ratio:.2f}x")
    print(f"identical greedy replies: {same:.2f} of {len(prompts)}")
    print(f"teacher: {teacher}, batch {batch}, {MAX_NEW_TOKENS} new tokens at most")
    print(f"other processes' share of the CPU during the run: {load.share():.2f}")


if __name__ == "__main__":
    main()

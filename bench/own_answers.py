"""Own-answer rules benchmark: when the model's own answer stands, on the same generations.
Prints a table.

Under `answer.unsupported = "quote"` the engine keeps the model's own answer or quotes one shown
sentence instead (`answer.quote_by`; the tuned modes with the evidence selector). Which own
answers stand is `answer.own_answers`:

- supported: every sentence is supported by some shown chunk;
- agreeing: every sentence is also supported by the sentence picked for the question, alone.

The rule applies after generation, so this script generates once per mode (`rag`, and
`rag+tuned` when the project has an adapter) and finishes each raw answer under both rules:
the two rows of a mode score identical model outputs. Columns: correctness as `ragtune eval`
scores it (`eval.metrics.score_answer`) on all questions and on two fixed halves by a hash of
the question text (`bench/retrieve.py`'s `dev_half`: the default was chosen on the dev half),
and the share of answers that are quotes.

Default: the sample corpus built with the embedded models and its 58 gold questions, or
`--project DIR --questions FILE` (`ragtune eval`'s question files).

--smoke: a tiny random generator on 4 documents of the sample corpus; its figures only show
that the script works.

Usage:
    python bench/own_answers.py [--project DIR] [--questions FILE] [--smoke]
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from smoke import TINY_LABEL, bench_project, project_parser, single_threaded

from builder.engine import open_engine
from builder.sample_corpus import SAMPLE_QUESTIONS_PATH
from eval.metrics import score_answer
from eval.questions import read_eval_questions
from retrieval.config import OWN_ANSWER_RULES


def dev_half(question: str) -> bool:
    """The same halves as `bench/retrieve.py --halves`."""
    return hashlib.sha256(question.encode()).digest()[0] % 2 == 0


def compare(engine, questions) -> dict[tuple[str, str], list[tuple[float, bool, bool]]]:
    """{(mode, rule): [(correct, quoted, dev half) per question]}."""
    modes = [m for m in ("rag", "rag+tuned") if m in engine.modes]
    rows: dict[tuple[str, str], list[tuple[float, bool, bool]]] = {}
    for mode in modes:
        engine.config.own_answers = "supported"
        answers = engine.answer_many([q.question for q in questions], mode)
        for rule in OWN_ANSWER_RULES:
            engine.config.own_answers = rule
            scored = []
            for question, answer in zip(questions, answers):
                if not answer.refused and not answer.quoted and answer.retrieved:
                    answer = engine._finish(
                        question.question, mode, answer.retrieved, answer.model_answer, 0.0
                    )
                metrics = score_answer(question, answer, k=engine.documents, refusal=engine.refusal)
                scored.append(
                    (metrics["correct"] or 0.0, answer.quoted, dev_half(question.question))
                )
            rows[(mode, rule)] = scored
    return rows


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    args = project_parser(__doc__).parse_args()
    if args.smoke:
        single_threaded()
    with tempfile.TemporaryDirectory() as temporary:
        project = bench_project(args, Path(temporary), [])
        questions = read_eval_questions(args.questions or SAMPLE_QUESTIONS_PATH)
        if args.smoke:
            sources = {
                p.relative_to(project.docs_dir).as_posix() for p in project.docs_dir.rglob("*")
            }
            questions = [q for q in questions if set(q.sources) & sources]
        engine = open_engine(project, use="eval")
        began = time.monotonic()
        rows = compare(engine, questions)
        seconds = time.monotonic() - began
    model = TINY_LABEL if args.smoke else project.config.generation.model
    dev = sum(dev_half(q.question) for q in questions)
    print(
        f"\n{len(questions)} questions ({dev} in the dev half), generator {model}, "
        f"{seconds:.0f} s\n"
    )
    print("mode       rule       correct  dev half  held-out half  quoted")
    for (mode, rule), scored in rows.items():
        print(
            f"{mode:<10} {rule:<10} {mean([c for c, _, _ in scored]):<8.3f} "
            f"{mean([c for c, _, d in scored if d]):<9.3f} "
            f"{mean([c for c, _, d in scored if not d]):<14.3f} "
            f"{mean([float(q) for _, q, _ in scored]):.3f}"
        )


if __name__ == "__main__":
    main()

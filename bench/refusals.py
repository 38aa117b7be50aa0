"""Refusal benchmark: does a mode refuse because the evidence is missing, or at random? Prints a
table.

A refusal is honest when the shown chunks lack the answer and a loss when they hold it. A gold
question set of answerable questions only rewards never refusing, and one of unanswerable
questions only rewards refusing, so this script asks every answerable gold question twice in
each RAG mode, with the same engine and settings:

- gold shown: retrieval as the engine does it (the gold document is usually among the chunks);
- gold removed: the same search with every chunk of the question's gold documents left out, the
  next chunks moved up (what the model sees when the corpus lacks the answer; another document
  may still hold it, which the last column counts).

Answers come from the backend `ragtune eval` uses (`generation.backend` for `eval`).

Columns, per mode: correct and refused with the gold shown (`eval.metrics.score_answer`, the
evaluation's own scoring), and with it removed: refused, answered in the model's own verified
words, answered with a quote of a shown sentence, and answers that state the gold anyway. The
last row per mode is the gap: refusals with the gold removed minus refusals with it shown, with
a paired bootstrap interval; near 0 means the mode's refusals do not follow the evidence.

The answers are generated without the quote gate (`answer.quote_gate`). When the adapter's run
has calibrated bounds, a second column per mode ("MODE, gate") finishes the same generations
with the gate: an answer becomes a refusal when no shown sentence reaches the bound.

Default: the sample corpus built with the embedded models and its 58 gold questions (a corpus
written together with this code, whose questions are all answerable), or `--project DIR
--questions FILE` (JSONL of question, answer, sources; a project's held-out
`tune/eval_questions.jsonl` works). Questions without sources, and unanswerable ones, are
skipped.

--smoke: a tiny random generator on 4 documents of the sample corpus and their questions; its
figures only show that the script works.

Usage:
    python bench/refusals.py [--project DIR] [--questions FILE] [--modes rag,rag+tuned] [--smoke]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from smoke import TINY_LABEL, bench_project, project_parser, single_threaded

from builder.engine import open_engine
from builder.sample_corpus import load_sample_questions
from eval.bootstrap import bootstrap_ci, paired_difference_ci
from eval.grounding import same_source
from eval.metrics import contains_gold, score_answer
from eval.questions import EvalQuestion, read_eval_questions
from eval.refusal import is_refusal
from retrieval.answer import uses_retrieval

OVERFETCH = 10
"""Chunks searched per shown chunk in the gold-removed condition, so that a long gold document
holding all the top chunks still leaves enough others."""
GAP = "refusal gap (removed - shown)"
COLUMNS = (
    "correct, gold shown",
    "refused, gold shown",
    "refused, gold removed",
    "own answer, gold removed",
    "quoted, gold removed",
    "states the gold anyway",
)


def read_questions(path: Path | None, docs: Path, refusal: str) -> tuple[list[EvalQuestion], int]:
    """The answerable questions with gold sources, and how many others were skipped."""
    if path is None:
        rows = [item for item in load_sample_questions() if (docs / item["source"]).is_file()]
        questions = [EvalQuestion(r["question"], r["answer"], [r["source"]]) for r in rows]
    else:
        questions = read_eval_questions(path)
    usable = [q for q in questions if q.sources and not is_refusal(q.answer, refusal)]
    return usable, len(questions) - len(usable)


def without_gold(engine, questions: list[EvalQuestion]) -> list[list]:
    """The chunks a RAG prompt would show with every chunk of the gold documents left out."""
    shown = engine.documents
    engine.documents = shown * OVERFETCH
    try:
        found = engine.retrieve([q.question for q in questions])
    finally:
        engine.documents = shown
    return [
        [h for h in hits if not any(same_source(h.source, gold) for gold in q.sources)][:shown]
        for q, hits in zip(questions, found)
    ]


def gated(engine, answers: list, mode: str) -> list:
    """The same answers as the quote gate would finish them (the gate acts after generation,
    so the generations are shared); a refusal stays one."""
    gate = engine.config.quote_gate
    engine.config.quote_gate = True
    try:
        return [
            a
            if a.refused
            else engine._finish(a.question, mode, a.retrieved, a.model_answer, a.seconds)
            for a in answers
        ]
    finally:
        engine.config.quote_gate = gate


def columns(questions: list[EvalQuestion], normal: list, lacking: list, refusal: str, k: int):
    """{column: one value per question} of one mode's answers."""
    scored, scored_lacking = (
        [score_answer(q, a, k=k, refusal=refusal) for q, a in zip(questions, got)]
        for got in (normal, lacking)
    )
    refused = [s["refusal"] for s in scored_lacking]
    quoted = [float(bool(a.quoted) and not r) for a, r in zip(lacking, refused)]
    return {
        "correct, gold shown": [s["correct"] for s in scored],
        "refused, gold shown": [s["refusal"] for s in scored],
        "refused, gold removed": refused,
        "own answer, gold removed": [1.0 - r - q for r, q in zip(refused, quoted)],
        "quoted, gold removed": quoted,
        "states the gold anyway": [
            0.0 if r else contains_gold(a.answer, q.answer)
            for a, r, q in zip(lacking, refused, questions)
        ],
    }


def measure(engine, questions: list[EvalQuestion], mode: str, removed: list[list]) -> dict:
    """{column label: {column: one value per question}} for `mode` without the quote gate and,
    when the adapter's run has bounds, with it."""
    texts = [q.question for q in questions]
    engine.config.quote_gate = False
    normal = engine.answer_many(texts, mode)
    lacking = engine.answer_many(texts, mode, hits=removed)
    results = {mode: columns(questions, normal, lacking, engine.refusal, engine.documents)}
    if engine.quote_bounds:
        results[f"{mode}, gate"] = columns(
            questions,
            gated(engine, normal, mode),
            gated(engine, lacking, mode),
            engine.refusal,
            engine.documents,
        )
    return results


def main() -> None:
    parser = project_parser(__doc__)
    parser.add_argument("--modes", default="rag,rag+tuned", help="RAG modes, comma-separated")
    args = parser.parse_args()
    if args.smoke:
        single_threaded()
    with tempfile.TemporaryDirectory() as temporary:
        project = bench_project(args, Path(temporary), [])
        engine = open_engine(project, use="eval")  # the backend `ragtune eval` answers on
        questions, skipped = read_questions(args.questions, project.docs_dir, engine.refusal)
        modes = [m for m in args.modes.split(",") if uses_retrieval(m) and m in engine.modes]
        began = time.monotonic()
        removed = without_gold(engine, questions)
        results = {
            label: values
            for mode in modes
            for label, values in measure(engine, questions, mode, removed).items()
        }
        seconds = time.monotonic() - began
    model = TINY_LABEL if args.smoke else project.config.generation.model
    print(
        f"\n{len(questions)} answerable questions with gold sources ({skipped} skipped), "
        f"{engine.documents} chunks shown; generator {model}; {seconds:.0f} s\n"
    )
    width = max(len(c) for c in (*COLUMNS, GAP)) + 2
    print(f"{'':<{width}}" + "".join(f"{label:<26}" for label in results))
    for column in COLUMNS:
        cells = [cell(bootstrap_ci(values[column]), "") for values in results.values()]
        print(f"{column:<{width}}" + "".join(f"{c:<26}" for c in cells))
    gaps = [
        cell(
            paired_difference_ci(values["refused, gold removed"], values["refused, gold shown"]),
            "+",
        )
        for values in results.values()
    ]
    print(f"{GAP:<{width}}" + "".join(f"{g:<26}" for g in gaps))


def cell(interval, sign: str) -> str:
    """'mean [low, high]' of a bootstrap interval or difference; 'n/a' when undefined."""
    if interval.mean is None:
        return "n/a"
    if interval.low is None:
        return f"{interval.mean:{sign}.3f}"
    return f"{interval.mean:{sign}.3f} [{interval.low:{sign}.2f}, {interval.high:{sign}.2f}]"


if __name__ == "__main__":
    main()

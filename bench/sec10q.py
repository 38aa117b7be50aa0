"""SEC 10-Q benchmark: cited answers on 20 public quarterly filings (PDF) with 195 reviewed
questions (../shared/data/sec10q, Docugami KG-RAG, MIT). Prints a table.

The product's own flow, run as a user would run it, with the CLI:
1. `ragtune build` on the 20 PDFs as they are.
2. `ragtune retrieve -k 5 --json`: the share of questions with a chunk of a gold filing in the
   top 5 (the data set names its source filings as a glob, e.g. `*2023 Q1 AAPL*`; it has no
   page-level gold).
3. `ragtune eval --questions` of the chosen modes (default base and rag: a project without an
   adapter) on the chosen questions: correctness (gold containment), gold-token recall and
   token F1 against the reviewed answers, faithfulness to the shown chunks, verified citation
   precision and recall against the gold filings, the share of answers in which the model wrote
   a valid marker itself, and the fact-error check of the verified citations.

The reference answers are long analyst paragraphs, so gold containment is near 0 for any short
answer: read gold-token recall and the citation figures beside it.

--smoke: 2 filings and 2 of their questions, real embedded models, a few tokens per answer.

Usage:
    python bench/sec10q.py --data ../shared/data/sec10q [--work DIR] [--limit N]
                           [--modes base,rag] [--set section.key=value ...] [--smoke]
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAGTUNE = [sys.executable, "-m", "builder.cli"]
SMOKE_FILINGS = ("2023 Q1 AAPL.pdf", "2023 Q1 MSFT.pdf")
ROWS = (
    ("correct", "correct (gold contained)"),
    ("gold_recall", "gold-token recall"),
    ("token_f1", "token F1"),
    ("faithfulness", "faithfulness to shown chunks"),
    ("citation_precision", "citation precision (verified)"),
    ("citation_recall", "citation recall (verified)"),
    ("model_cited", "model wrote a valid [n]"),
    ("fact_errors", "fact errors per answer"),
    ("refusal", "refusal rate"),
    ("hit_at_k", "gold filing among shown chunks"),
)


class DataError(Exception):
    pass


def read_questions(folder: Path) -> tuple[list[dict], list[Path]]:
    """The questions with their gold filings resolved from the data set's glob."""
    table, docs = folder / "qna_data.csv", folder / "docs"
    if not table.is_file() or not docs.is_dir():
        raise DataError(f"{folder}: needs qna_data.csv and docs/; --data is the sec10q folder")
    filings = sorted(docs.glob("*.pdf"))
    rows = []
    with table.open(encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            pattern = row["Source Docs"].strip()
            sources = [p.name for p in filings if fnmatch.fnmatch(p.name, pattern + "*")]
            sources = sources or [p.name for p in filings if fnmatch.fnmatch(p.name, pattern)]
            if not sources:
                raise DataError(f"{table}, line {number}: {pattern!r} matches no filing")
            rows.append(
                {
                    "question": row["Question"].strip(),
                    "answer": row["Answer"].strip(),
                    "sources": sources,
                    "type": row["Question Type"].strip(),
                }
            )
    return rows, filings


def run(command: list[str], what: str) -> subprocess.CompletedProcess:
    began = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{what} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    print(f"{what}: {time.monotonic() - began:.0f} s", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/sec10q")
    parser.add_argument("--work", type=Path, help="project folder (default: a temporary one)")
    parser.add_argument("--limit", type=int, default=0, help="first N questions (0: all)")
    parser.add_argument("--modes", default="base,rag")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--smoke", action="store_true", help="2 filings, 2 questions")
    args = parser.parse_args(argv)
    try:
        questions, filings = read_questions(args.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = list(args.set)
    if args.smoke:
        filings = [p for p in filings if p.name in SMOKE_FILINGS]
        questions = [q for q in questions if set(q["sources"]) <= set(SMOKE_FILINGS)][:2]
        settings += ["generation.max_new_tokens=8"]
    elif args.limit:
        questions = questions[: args.limit]
    work = args.work or Path(tempfile.mkdtemp(prefix="ragtune-sec10q-"))
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for filing in filings:
        if not (docs / filing.name).exists():
            shutil.copy(filing, docs / filing.name)
    sets = [item for setting in settings for item in ("--set", setting)]
    run([*RAGTUNE, "build", str(work), "--docs", str(docs), *sets], "build")
    questions_file = work / "questions.jsonl"
    with questions_file.open("w", encoding="utf-8") as out:
        for q in questions:
            out.write(json.dumps({k: q[k] for k in ("question", "answer", "sources")}) + "\n")
    retrieved = run(
        [
            *RAGTUNE,
            "retrieve",
            str(work),
            "--questions",
            str(questions_file),
            "-k",
            "5",
            "--json",
            *sets,
        ],
        "retrieve",
    )
    found = [
        any(hit["source"] in q["sources"] for hit in json.loads(line)["hits"])
        for q, line in zip(questions, retrieved.stdout.splitlines())
    ]
    evaluated = run(
        [
            *RAGTUNE,
            "eval",
            str(work),
            "--questions",
            str(questions_file),
            "--modes",
            args.modes,
            *sets,
            "--json",
        ],
        "eval",
    )
    summary = json.loads(evaluated.stdout.strip().splitlines()[-1])
    modes = summary["modes"]
    print(f"SEC 10-Q: {len(filings)} filings, {len(questions)} questions")
    print(f"gold filing in the top 5 retrieved: {sum(found)}/{len(found)}")
    header = ["metric", *modes]
    lines = [header]
    for key, label in ROWS:
        cells = []
        for mode in modes:
            cell = summary["per_mode"][mode].get(key)
            if not cell or cell["mean"] is None:
                cells.append("n/a")
            elif cell["low"] is None:
                cells.append(f"{cell['mean']:.3f} n={cell['n']}")
            else:
                cells.append(
                    f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}] n={cell['n']}"
                )
        lines.append([label, *cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"project: {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

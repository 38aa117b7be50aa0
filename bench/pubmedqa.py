"""PubMedQA benchmark (the dataset of the RAFT paper's Table 1): prints a table.

The product's own flow, run as a user would run it, with the CLI:
1. `ragtune build`: the corpus is the contexts of all 1000 expert-labelled abstracts (PQA-L), one
   markdown file per PubMed id with its section labels (BACKGROUND, METHODS, ...) as headings.
2. Retrieval of the 500 test questions (`ragtune retrieve -k 20 --json`): hit@5 and MRR of the
   question's own abstract, over the ranked list of distinct abstracts.
3. Variant "synthesized": `ragtune tune` with its defaults (pairs synthesized from the corpus,
   RAFT-formatted), then `ragtune eval` of base, rag, tuned and rag+tuned on the test split.
4. Variant "labelled": `ragtune tune --data train.jsonl --data-only`, the 500 non-test labelled
   questions as user-provided data (answer: the label word), then `ragtune eval` of the tuned modes.

The metric is yes/no/maybe accuracy (the first label word of the answer, see eval/metrics.py)
with a paired-bootstrap 95% CI. Every question, in training and test alike, ends with
"Answer yes, no or maybe." so that every mode is asked the same thing. Generation stops after
`--max-new-tokens` tokens: the label is the first word of a good answer.

Published figures (RAFT, arXiv 2403.10131, Table 1; 7B models, GPT-3.5): LLaMA2-7B + RAG 58.8,
domain-specific fine-tuning + RAG 71.6, RAFT 73.3, GPT-3.5 + RAG 71.6; majority class 55.2.

--smoke: the same flow on 3 test questions and a corpus of those 3 abstracts and 4 others, with
a tiny random generator (tests/tiny_models.py) as student and no teacher, one training step:
it checks the script, its figures mean nothing.

Usage:
    python bench/pubmedqa.py --data ../shared/data/pubmedqa [--work DIR] [--limit N]
                             [--variants synthesized,labelled] [--max-new-tokens 8]
                             [--modes base,rag,tuned,rag+tuned]
                             [--set section.key=value ...] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAGTUNE = [sys.executable, "-m", "builder.cli"]
INSTRUCTION = "Answer yes, no or maybe."
LABELS = ("yes", "no", "maybe")
VARIANTS = ("synthesized", "labelled")
SMOKE_TEST, SMOKE_OTHERS = 3, 4
SMOKE_SETTINGS = [
    "synthesis.teacher=none",
    # No teacher in a smoke run, and 7 abstracts have no FAQ, table or key-value line: the
    # English sentence rules write its pairs (the abstracts are English).
    "synthesis.english_rules=true",
    "tune.max_steps=1",
    "tune.max_seq_tokens=4096",  # the tiny tokenizer has 400 tokens: ~3x longer conversations
    "generation.device=cpu",
    "embedding.device=cpu",
]
PUBLISHED = (
    ("LLaMA2-7B + RAG (RAFT paper)", 58.8),
    ("domain fine-tuning + RAG (RAFT paper)", 71.6),
    ("RAFT, LLaMA2-7B (RAFT paper)", 73.3),
    ("GPT-3.5 + RAG (RAFT paper)", 71.6),
)


class DataError(Exception):
    pass


def read_pubmedqa(folder: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """The 1000 labelled abstracts and the test split's {pmid: label}."""
    paths = [folder / "ori_pqal.json", folder / "test_ground_truth.json"]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: missing; --data must be the folder holding ori_pqal.json")
    try:
        abstracts = json.loads(paths[0].read_text(encoding="utf-8"))
        test = json.loads(paths[1].read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{folder}: not PubMedQA JSON ({error})") from error
    missing = [pmid for pmid in test if pmid not in abstracts]
    if missing:
        raise DataError(f"{paths[1]}: {len(missing)} test ids not in ori_pqal.json")
    return abstracts, test


def source_name(pmid: str) -> str:
    return f"{pmid}.md"


def write_corpus(abstracts: dict[str, dict], docs: Path) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    for pmid, item in abstracts.items():
        labels = item.get("LABELS") or [""] * len(item["CONTEXTS"])
        parts = [f"# PubMed {pmid}"]
        for label, text in zip(labels, item["CONTEXTS"]):
            parts.append(f"## {label.title()}\n\n{text}" if label else text)
        (docs / source_name(pmid)).write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def question_text(item: dict) -> str:
    return f"{item['QUESTION'].strip()} {INSTRUCTION}"


def write_questions(abstracts: dict[str, dict], ids: list[str], path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for pmid in ids:
            item = abstracts[pmid]
            record = {
                "question": question_text(item),
                "answer": item["final_decision"],
                "sources": [source_name(pmid)],
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_training(abstracts: dict[str, dict], ids: list[str], path: Path) -> None:
    """The labelled non-test questions as user data in OpenAI `messages` form."""
    with path.open("w", encoding="utf-8") as out:
        for pmid in ids:
            item = abstracts[pmid]
            messages = [
                {"role": "user", "content": question_text(item)},
                {"role": "assistant", "content": item["final_decision"].capitalize() + "."},
            ]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def ragtune(*args: str, overrides: list[str], capture: bool = False) -> str:
    command = [*RAGTUNE, *args]
    for override in overrides:
        command += ["--set", override]
    print("$ ragtune " + " ".join(args), file=sys.stderr, flush=True)
    result = subprocess.run(
        command,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE if capture else sys.stderr,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if result.returncode != 0:
        raise SystemExit(f"ragtune {args[0]} failed with exit code {result.returncode}")
    return result.stdout or ""


def retrieval_scores(output: str, gold: dict[str, str], k: int = 5) -> dict[str, float]:
    """hit@k and MRR of the question's own abstract among the distinct abstracts retrieved."""
    hits = mrr = 0.0
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    for line in lines:
        ranked: list[str] = []
        for hit in line["hits"]:
            if hit["source"] not in ranked:
                ranked.append(hit["source"])
        own = gold[line["question"]]
        if own in ranked:
            rank = ranked.index(own) + 1
            mrr += 1 / rank
            hits += rank <= k
    return {"hit_at_5": hits / len(lines), "mrr": mrr / len(lines), "n": len(lines)}


def eval_summary(project: Path, questions: Path, modes: str, adapter: str | None, overrides):
    args = ["eval", str(project), "--questions", str(questions), "--modes", modes, "--json"]
    if adapter:
        args += ["--adapter", adapter]
    started = time.monotonic()
    summary = json.loads(ragtune(*args, overrides=overrides, capture=True))
    summary["seconds"] = time.monotonic() - started
    return summary


def current_adapter(project: Path) -> str:
    run = (project / "adapters" / "CURRENT").read_text(encoding="utf-8").strip()
    return str(project / "adapters" / run / "adapter")


def run_card(adapter: str) -> dict:
    return json.loads((Path(adapter).parent / "run_card.json").read_text(encoding="utf-8"))


def percent(cell: dict | None) -> str:
    if not cell or cell.get("mean") is None:
        return "n/a"
    return f"{100 * cell['mean']:.1f} [{100 * cell['low']:.1f}, {100 * cell['high']:.1f}]"


def label_counts(report_dir: Path) -> dict[str, Counter]:
    """Per mode, how often each label (or none) was answered: a 135M model that always says
    'yes' scores the majority rate, and this shows it."""
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    from eval.metrics import extract_label

    counts: dict[str, Counter] = {}
    for question in report["questions"]:
        for mode, answer in question["modes"].items():
            counts.setdefault(mode, Counter())[extract_label(answer["answer"]) or "none"] += 1
    return counts


def latest_report(project: Path) -> Path:
    name = (project / "reports" / "LATEST").read_text(encoding="utf-8").strip()
    return project / "reports" / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with ori_pqal.json")
    parser.add_argument("--work", type=Path, help="project folder (default: a temporary one)")
    parser.add_argument("--limit", type=int, default=0, help="test questions to use (0: all 500)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument(
        "--modes", default="base,rag,tuned,rag+tuned", help="modes of the synthesized variant"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every command"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="3 questions, a tiny random model: checks the script"
    )
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    try:
        abstracts, test = read_pubmedqa(args.data)
    except DataError as error:
        raise SystemExit(f"error: {error}") from error

    work = args.work or Path(tempfile.mkdtemp(prefix="ragtune-pubmedqa-"))
    model = "embedded SmolLM2-135M-Instruct"
    if args.smoke:
        from smoke import TINY_LABEL, single_threaded, tiny_generator

        single_threaded()

        args.limit, model = SMOKE_TEST, TINY_LABEL
        others = [pmid for pmid in abstracts if pmid not in test][:SMOKE_OTHERS]
        abstracts = {pmid: abstracts[pmid] for pmid in [*list(test)[:SMOKE_TEST], *others]}
        tiny = tiny_generator(work / "tiny-llama")
        args.set = [f"generation.model={tiny}", *SMOKE_SETTINGS, *args.set]
    test_ids = list(test)[: args.limit or None]
    train_ids = [pmid for pmid in abstracts if pmid not in test]
    questions = work / "test_questions.jsonl"
    training = work / "train_labelled.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    write_corpus(abstracts, work / "docs")
    write_questions(abstracts, test_ids, questions)
    write_training(abstracts, train_ids, training)
    generation = [*args.set, f"generation.max_new_tokens={args.max_new_tokens}"]

    timings: dict[str, float] = {}
    started = time.monotonic()
    ragtune("build", str(work), "--docs", str(work / "docs"), overrides=args.set)
    timings["build"] = time.monotonic() - started

    gold = {question_text(abstracts[pmid]): source_name(pmid) for pmid in test_ids}
    output = ragtune(
        "retrieve",
        str(work),
        "--questions",
        str(questions),
        "-k",
        "20",
        "--json",
        overrides=args.set,
        capture=True,
    )
    retrieval = retrieval_scores(output, gold)

    rows: list[tuple[str, dict | None]] = []
    notes: list[str] = []
    counts: dict[str, Counter] = {}
    if "synthesized" in variants:
        started = time.monotonic()
        ragtune("tune", str(work), overrides=args.set)
        timings["tune (synthesized)"] = time.monotonic() - started
        adapter = current_adapter(work)
        card = run_card(adapter)
        summary = eval_summary(work, questions, args.modes, adapter, generation)
        timings[f"eval, {args.modes}"] = summary["seconds"]
        for mode, label in (
            ("base", "base"),
            ("rag", "RAG"),
            ("tuned", "tuned on synthesized pairs"),
            ("rag+tuned", "RAG + tuned on synthesized pairs"),
        ):
            if mode in summary["per_mode"]:
                rows.append((label, summary["per_mode"][mode].get("label_accuracy")))
        counts.update(label_counts(latest_report(work)))
        synthesis, examples = card.get("synthesis", {}), card.get("examples")
        notes.append(
            f"synthesized: {synthesis.get('generated')} pairs generated, "
            f"{synthesis.get('kept')} kept, {examples} RAFT examples trained on"
        )
    if "labelled" in variants:
        started = time.monotonic()
        ragtune("tune", str(work), "--data", str(training), "--data-only", overrides=args.set)
        timings[f"tune (labelled, {len(train_ids)} questions)"] = time.monotonic() - started
        adapter = current_adapter(work)
        summary = eval_summary(work, questions, "tuned,rag+tuned", adapter, generation)
        timings["eval, 2 modes"] = summary["seconds"]
        per_mode = summary["per_mode"]
        labelled = f"{len(train_ids)} labelled"
        rows.append((f"tuned on {labelled}", per_mode["tuned"].get("label_accuracy")))
        rows.append((f"RAG + tuned on {labelled}", per_mode["rag+tuned"].get("label_accuracy")))
        for mode, count in label_counts(latest_report(work)).items():
            counts[f"{mode} (labelled)"] = count

    majority = Counter(test[pmid] for pmid in test_ids).most_common(1)[0]
    width = max(len(label) for label, _ in (*rows, *PUBLISHED)) + 2
    print(
        f"\nPubMedQA (PQA-L) test split: {len(test_ids)} questions, corpus {len(abstracts)} "
        f"abstracts, {model} on CPU"
    )
    print(f"\n{'system':<{width}}  accuracy % [95% CI]")
    print("-" * (width + 24))
    for label, cell in rows:
        print(f"{label:<{width}}  {percent(cell)}")
    print(
        f"{'majority class (' + majority[0] + ')':<{width}}  "
        f"{100 * majority[1] / len(test_ids):.1f}"
    )
    for label, figure in PUBLISHED:
        print(f"{label:<{width}}  {figure:.1f}")
    print(
        f"\nretrieval of the question's own abstract ({retrieval['n']} questions): "
        f"hit@5 {retrieval['hit_at_5']:.3f}, MRR {retrieval['mrr']:.3f}"
    )
    print("\nanswered labels per mode:")
    for mode, count in counts.items():
        shown = ", ".join(f"{label} {count[label]}" for label in (*LABELS, "none"))
        print(f"  {mode:<22} {shown}")
    for note in notes:
        print(note)
    print(
        "\nwall time: " + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items())
    )
    if args.smoke and args.work is None:
        shutil.rmtree(work)
    else:
        print(f"project: {work}")


if __name__ == "__main__":
    main()

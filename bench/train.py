"""Training benchmark: prints a table.

1. Training steps, ragtune vs plain trl: tokens/s (prompt and answer tokens, no padding, per
   second of optimizer steps; model load and the first step excluded) and peak memory of
   `finetune.train.train` with the project defaults (`TuneConfig()`: LoRA, answer-only loss),
   against a plain trl `SFTTrainer` with the default `SFTConfig` (full fine-tuning, loss on every
   token of a messages dataset, activation checkpointing, bf16, batch 8; only `use_cpu` added,
   without which it refuses to start on a CPU), on the same model (the embedded
   SmolLM2-135M-Instruct) and the same RAFT conversations that `ragtune tune` trains on. Each
   trainer runs in its own process, so the peak (RSS on CPU, `max_memory_allocated` on CUDA) is
   its own; with --rounds N they alternate and each keeps its best round, since the machine is
   shared. Goal: >= 1.5x the tokens/s, <= 1x the memory.
2. Synthesis rate on the sample corpus in kept pairs/s: rules alone, and the embedded teacher
   generating in batches (model load excluded), each followed by the filters.
3. Wall time of a full `ragtune tune` of the sample corpus with the defaults, stage by stage, as
   its `tune/status.json` shows them while it runs.

The training data are `PROJECT/tune/train.jsonl` of that full run; with --skip-full-tune, of
`ragtune tune --set tune.max_steps=1`.

Usage:
    python bench/train.py [--steps 6] [--examples 24] [--rounds 1] [--device cpu]
                          [--teacher-chunks N] [--skip-full-tune]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
RAGTUNE = [sys.executable, "-m", "builder.cli"]
GENERATOR = "embedded:SmolLM2-135M-Instruct"
STAGES = ("synthesize", "split", "format", "train", "check")


# --- one trainer, in its own process ---------------------------------------------------------


def step_timer():
    """A TrainerCallback that stamps the end of every optimizer step with the wall clock, the
    process's CPU time and trl's running count of non-padding tokens."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: dict[int, float] = {}
            self.cpu: dict[int, float] = {}
            self.tokens: dict[int, int] = {}
            self.trainer = None  # set for plain trl, which logs num_tokens only every 10 steps

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()
            self.cpu[state.global_step] = time.process_time()
            if self.trainer is not None:
                self.tokens[state.global_step] = int(self.trainer._total_train_tokens)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:  # ragtune logs every step
                self.tokens[state.global_step] = int(logs["num_tokens"])

    return StepTimer()


def run_ragtune(model: str, examples: list, steps: int, out: Path, timer) -> dict:
    from finetune.config import TuneConfig
    from finetune.train import train

    config = TuneConfig(max_steps=steps)
    train(model, examples, out, config, progress=lambda event: None, callbacks=[timer])
    return {"batch": config.batch_size, "method": config.method}


def run_trl(model: str, examples: list, steps: int, out: Path, timer) -> dict:
    """Plain trl as its documentation shows it: a messages dataset, the model by path and the
    default SFTConfig, with only what the run needs set."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list([{"messages": example.messages} for example in examples])
    # use_cpu: without it, the default bf16=True refuses to start on a machine without a GPU.
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, callbacks=[timer])
    timer.trainer = trainer
    trainer.train()
    return {"batch": args.per_device_train_batch_size, "method": "full"}


def worker(args: argparse.Namespace) -> None:
    """Train one way and write the measurements as JSON to --result."""
    import torch

    from finetune.data import read_examples
    from retrieval.models import resolve_generator_model

    examples = read_examples(args.data)[0][: args.examples]
    model = resolve_generator_model(GENERATOR)
    timer = step_timer()
    run = run_ragtune if args.worker == "ragtune" else run_trl
    with tempfile.TemporaryDirectory() as out:
        details = run(model, examples, args.steps, Path(out), timer)
    first, last = min(timer.ends), max(timer.ends)  # the first step is warm-up
    seconds = timer.ends[last] - timer.ends[first]
    tokens = timer.tokens[last] - timer.tokens[first]
    cuda = torch.cuda.is_available()
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    result = {
        **details,
        "timed_steps": last - first,
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "tokens_per_cpu_s": tokens / (timer.cpu[last] - timer.cpu[first]),
        "peak_mib": peak / 2**20,
        "memory": "CUDA allocated" if cuda else "RSS",
        "threads": torch.get_num_threads(),
    }
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


def bench_trainer(kind: str, data: Path, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--worker", kind, "--data", str(data)]
        command += ["--steps", str(args.steps), "--examples", str(args.examples)]
        command += ["--result", str(result)]
        print(f"training {args.steps} steps: {kind} …", file=sys.stderr)
        subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text(encoding="utf-8"))


# --- the sample project, its training data and a full tune -----------------------------------


def cli_env(device: str) -> dict:
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def build_sample(work: Path, device: str) -> Path:
    project = work / "project"
    quiet = {"cwd": ROOT, "env": cli_env(device), "stdout": subprocess.DEVNULL, "check": True}
    subprocess.run([*RAGTUNE, "sample", str(project / "docs")], **quiet)
    print("building the sample project …", file=sys.stderr)
    subprocess.run([*RAGTUNE, "build", str(project), "--docs", str(project / "docs")], **quiet)
    return project


def timed_tune(project: Path, device: str, *overrides: str) -> dict:
    """Run `ragtune tune` and note when each stage first shows in its status file."""
    status = project / "tune" / "status.json"
    command = [*RAGTUNE, "tune", str(project)]
    for override in overrides:
        command += ["--set", override]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=cli_env(device), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seen: dict[str, float] = {}
    while process.poll() is None:
        time.sleep(0.2)
        try:
            stage = json.loads(status.read_text(encoding="utf-8"))["stage"]
        except (OSError, ValueError, KeyError):
            continue
        seen.setdefault(stage, time.perf_counter() - started)
    total = time.perf_counter() - started
    if process.returncode:
        sys.exit(f"error: ragtune tune failed:\n{process.stderr.read().decode()[-3000:]}")
    # Each stage lasts until the next one shows; the first includes start-up and the retriever.
    order = [stage for stage in STAGES if stage in seen]
    marks = [0.0] + [seen[stage] for stage in order[1:]] + [total]
    card = next((project / "adapters").glob("run-*/run_card.json"), None)
    return {
        "total_s": total,
        "stages": {stage: marks[i + 1] - marks[i] for i, stage in enumerate(order)},
        "card": json.loads(card.read_text(encoding="utf-8")) if card else {},
    }


# --- synthesis -------------------------------------------------------------------------------


def bench_synthesis(project_root: Path, teacher_chunks: int, device: str) -> dict:
    """Kept pairs and seconds of the rules alone and of the teacher alone, filters included."""
    from dataclasses import replace

    from builder.project import open_project
    from builder.tune import _ProjectSearch
    from finetune.synthesize import synthesize
    from finetune.teacher import make_teacher

    project = open_project(project_root)
    search = _ProjectSearch(project)
    chunks = list(search.retriever.index.store.iter_chunks())
    search.chunk_ids(["warm-up"], 5)  # the first query pays one-off set-up
    defaults = project.config.synthesis
    if teacher_chunks is None:
        teacher_chunks = defaults.teacher_max_chunks
    rates = {}
    started = time.perf_counter()
    kept, report = synthesize(
        chunks, replace(defaults, teacher_max_chunks=0), search.chunk_ids, None
    )
    rates["rules"] = (report.generated, len(kept), time.perf_counter() - started)
    if teacher_chunks and defaults.uses_teacher():
        teacher = make_teacher(
            defaults.teacher,
            defaults.teacher_model_name,
            device=device,
            batch_size=defaults.teacher_batch_size,
        )
        teacher.load()
        print(f"teacher on {teacher_chunks} chunks …", file=sys.stderr)
        only = replace(defaults, rules=False, teacher_max_chunks=teacher_chunks)
        started = time.perf_counter()
        kept, report = synthesize(chunks, only, search.chunk_ids, teacher)
        seconds = time.perf_counter() - started
        rates[f"teacher on {teacher_chunks} chunks"] = (report.generated, len(kept), seconds)
    search.close()
    return rates


# --- the table -------------------------------------------------------------------------------


def best(runs: list[dict]) -> dict:
    return max(runs, key=lambda run: run["tokens_per_s"])


def table(args, ours: dict, plain: dict, synthesis: dict, full: dict | None) -> list[tuple]:
    speed = ours["tokens_per_s"] / plain["tokens_per_s"]
    cpu_speed = ours["tokens_per_cpu_s"] / plain["tokens_per_cpu_s"]
    memory = ours["peak_mib"] / plain["peak_mib"]
    rows = [("training data", f"{args.examples} conv.", "RAFT conversations of ragtune tune")]
    for name, run in (("ragtune", ours), ("plain trl", plain)):
        rows.append(
            (
                f"{name} ({run['method']}, batch {run['batch']}), tokens/s",
                f"{run['tokens_per_s']:.0f}",
                f"{run['tokens']} tokens in {run['seconds']:.1f} s, {run['timed_steps']} steps",
            )
        )
    rows += [
        (
            "tokens/s, ragtune ÷ trl",
            f"{speed:.2f}",
            "goal ≥ 1.50 " + ("✓" if speed >= 1.5 else "✗"),
        ),
        ("tokens per CPU-second, ragtune ÷ trl", f"{cpu_speed:.2f}", "less sensitive to others"),
        (
            f"peak {ours['memory']}, ragtune / trl, MiB",
            f"{ours['peak_mib']:.0f} / {plain['peak_mib']:.0f}",
            "",
        ),
        (
            "peak memory, ragtune ÷ trl",
            f"{memory:.2f}",
            "goal ≤ 1.00 " + ("✓" if memory <= 1 else "✗"),
        ),
        ("torch threads", str(ours["threads"]), f"best of {args.rounds} round(s)"),
    ]
    for name, (written, kept, seconds) in synthesis.items():
        note = f"{kept} kept of {written} in {seconds:.1f} s"
        if name.startswith("teacher"):
            note += ", model load excluded"
        rows.append((f"synthesis, {name}, kept pairs/s", f"{kept / seconds:.2f}", note))
    if full:
        card = full["card"]
        note = f"{card.get('examples', '?')} examples, {card.get('steps', '?')} steps"
        rows.append(("full ragtune tune (defaults), s", f"{full['total_s']:.0f}", note))
        for stage, seconds in full["stages"].items():
            rows.append((f"  {stage}, s", f"{seconds:.0f}", ""))
        if card.get("tokens_per_second"):
            rows.append(("  train stage, tokens/s", f"{card['tokens_per_second']:.0f}", "run card"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="steps per trainer; first is warm-up")
    parser.add_argument("--examples", type=int, default=24, help="conversations both train on")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of each trainer")
    parser.add_argument("--device", choices=("cpu", "auto"), default="cpu", help="auto: CUDA too")
    parser.add_argument(
        "--teacher-chunks",
        type=int,
        help="chunks the teacher reads (default: the project's; 0 skips)",
    )
    parser.add_argument("--skip-full-tune", action="store_true", help="no full `ragtune tune`")
    parser.add_argument("--worker", choices=("ragtune", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.steps < 2 or args.rounds < 1:
        sys.exit("error: --steps must be at least 2 (the first is warm-up), --rounds at least 1")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        project = build_sample(Path(temporary), args.device)
        full = None
        if args.skip_full_tune:
            print("ragtune tune --set tune.max_steps=1, for its training data …", file=sys.stderr)
            timed_tune(project, args.device, "tune.max_steps=1")
        else:
            print("full ragtune tune with the defaults …", file=sys.stderr)
            full = timed_tune(project, args.device)
        data = project / "tune" / "train.jsonl"
        runs: dict[str, list[dict]] = {"ragtune": [], "trl": []}
        for _ in range(args.rounds):
            for kind in runs:
                runs[kind].append(bench_trainer(kind, data, args))
        device = "cpu" if args.device == "cpu" else "auto"
        synthesis = bench_synthesis(project, args.teacher_chunks, device)

    rows = table(args, best(runs["ragtune"]), best(runs["trl"]), synthesis, full)
    width = max(len(row[0]) for row in rows)
    print(f"\n{'measure':<{width}}  {'value':>13}  note")
    print("-" * (width + 50))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>13}  {note}")
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()

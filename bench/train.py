"""Training benchmark: prints a table.

1. Training steps, like with like: tokens/s (prompt and answer tokens, no padding, per second of
   optimizer steps; model load and the first step excluded) and peak memory of ragtune's
   `finetune.train.train` (an `SFTTrainer` subclass whose loss scores the answer positions only,
   finetune/answer_loss.py) against a plain `trl.SFTTrainer` given the same everything: the same
   peft `LoraConfig`, batch size, gradient accumulation, learning rate, precision, maximum
   sequence length, sampling order, activation checkpointing, seed and completion-only loss, on
   the same model and the same RAFT conversations (prompt/completion rows) that `ragtune tune`
   trains on. The two workers report their effective settings and the table says which differ
   (none should) and their first-step losses (the same batch and weights give the same loss).
   A third row, labelled as such, is what a user gets out of the box: `SFTTrainer` with trl's
   default `SFTConfig` (full fine-tune, batch 8, activation checkpointing, loss on every token
   of a messages dataset; only `use_cpu` added, without which it refuses to start on a CPU).
   Each trainer runs in its own process, so the peak (RSS on CPU, `max_memory_allocated` on
   CUDA) is its own; with --rounds N they alternate and each keeps its best round, since the
   machine is shared. Goal: ragtune >= 1.5x the tokens/s of the same-settings trl run, <= 1x its
   memory.
2. Synthesis rate on the sample corpus in kept pairs/s: rules alone, and the teacher generating
   in batches (model load excluded), each followed by the filters.
3. Wall time of a full `ragtune tune` of the sample corpus with the defaults, stage by stage, as
   its `tune/status.json` shows them while it runs.

The training data are `PROJECT/tune/train.jsonl` of that full run; with --skip-full-tune, of a
`tune` with `tune.max_steps=1`.

--smoke runs every part on a 2-layer random Llama (tests/tiny_models.py) instead of SmolLM2,
on 4 documents of the sample corpus: 3 steps, 8 examples, the teacher on 1 chunk, no full tune.
Its figures only show that the script works.

Usage:
    python bench/train.py [--steps 6] [--examples 24] [--rounds 1] [--device cpu]
                          [--teacher-chunks N] [--skip-full-tune] [--no-trl-defaults] [--smoke]
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
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from machine import OtherLoad
from smoke import TINY_LABEL, build_sample, single_threaded, tiny_generator

ROOT = Path(__file__).resolve().parent.parent
RAGTUNE = [sys.executable, "-m", "builder.cli"]
GENERATOR = "embedded:SmolLM2-135M-Instruct"  # the default generation.model
STAGES = ("synthesize", "split", "format", "train", "check")
KINDS = {
    "ragtune": "ragtune (finetune.train)",
    "trl": "plain trl SFTTrainer, same settings",
    "trl-defaults": "out of the box: full fine-tune, trl defaults",
}
# SFTConfig fields that decide the work of a step or what is learned; the two like-for-like
# workers must agree on every one.
COMPARED_ARGS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "optim",
    "max_grad_norm",
    "seed",
    "max_steps",
    "max_length",
    "packing",
    "padding_free",
    "completion_only_loss",
    "assistant_only_loss",
    "loss_type",
    "train_sampling_strategy",
    "bf16",
    "fp16",
    "activation_checkpointing",
    "use_liger_kernel",
    "dataloader_num_workers",
)
SMOKE_SETTINGS = [
    "tune.max_seq_tokens=4096",  # the tiny tokenizer has 400 tokens: ~3x longer conversations
    "generation.max_new_tokens=8",
    "embedding.device=cpu",
]


# --- one trainer, in its own process ---------------------------------------------------------


def step_timer():
    """A TrainerCallback that stamps the end of every optimizer step with the wall clock, the
    process's CPU time and trl's running count of non-padding tokens, and notes the settings the
    trainer actually runs with."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: dict[int, float] = {}
            self.cpu: dict[int, float] = {}
            self.tokens: dict[int, int] = {}
            self.losses: dict[int, float] = {}
            self.settings: dict = {}
            self.trainer = None  # set where trl logs num_tokens only every 10 steps

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.settings = effective_settings(args, model)

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()
            self.cpu[state.global_step] = time.process_time()
            if self.trainer is not None:
                self.tokens[state.global_step] = int(self.trainer._total_train_tokens)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "num_tokens" in logs and self.trainer is None:
                self.tokens[state.global_step] = int(logs["num_tokens"])
            if "loss" in logs:
                self.losses[state.global_step] = float(logs["loss"])

    return StepTimer()


def effective_settings(args, model) -> dict:
    """The compared SFTConfig fields, the LoRA config and the weights' dtype, as JSON values."""
    from peft import PeftModel

    settings = {name: str(getattr(args, name, None)) for name in COMPARED_ARGS}
    if isinstance(model, PeftModel):
        lora = model.peft_config["default"].to_dict()
        for key in ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_dora"):
            value = lora.get(key)
            settings[f"lora.{key}"] = str(sorted(value) if isinstance(value, set) else value)
        settings["lora.task_type"] = str(lora.get("task_type"))
    else:
        settings["lora"] = "none (every weight trains)"
    settings["weights dtype"] = str(next(model.parameters()).dtype)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    settings["trainable parameters"] = str(trainable)
    return settings


def run_ragtune(model: str, examples: list, config, out: Path, timer) -> dict:
    from finetune.train import train

    train(model, examples, out, config, progress=lambda event: None, callbacks=[timer])
    return {"batch": config.batch_size, "method": config.method}


def run_trl(model: str, examples: list, config, out: Path, timer) -> dict:
    """Plain trl with ragtune's settings written out: a stock `SFTTrainer`, so the only
    difference from `run_ragtune` is ragtune's own training code."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from finetune.train import native_bf16

    if config.method != "lora":
        raise SystemExit(
            f"error: the like-for-like baseline is written for lora, not {config.method}"
        )
    cuda = torch.cuda.is_available()
    bf16 = native_bf16(cuda)  # the same precision rule as ragtune: bf16 only where it is native
    # trl's conversational prompt/completion format: the loss covers the completion only.
    rows = [{"prompt": e.messages[:-1], "completion": e.messages[-1:]} for e in examples]
    args = SFTConfig(
        output_dir=str(out),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        seed=config.seed,
        max_length=config.max_seq_tokens,
        packing=config.packing,
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        activation_checkpointing=cuda,  # as ragtune: off on the CPU, where memory is plentiful
        bf16=bf16,
        fp16=cuda and not bf16,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        logging_steps=1,
        disable_tqdm=True,  # as ragtune, which reports progress itself
        save_strategy="no",
        report_to="none",
    )
    peft_config = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_module_list(),
        use_dora=False,
        bias="none",
        task_type="CAUSAL_LM",
    )
    # A frozen bf16 base on a bf16 GPU, fp32 elsewhere (autocast computes in bf16 when native).
    dtype = torch.bfloat16 if bf16 and cuda else torch.float32
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=dtype),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=peft_config,
        callbacks=[timer],
    )
    trainer.train()
    return {"batch": args.per_device_train_batch_size, "method": "lora"}


def run_trl_defaults(model: str, examples: list, config, out: Path, timer) -> dict:
    """Plain trl as its documentation shows it: a messages dataset, the model by path and the
    default SFTConfig, with only what the run needs set."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list([{"messages": example.messages} for example in examples])
    # use_cpu: without it, the default bf16=True refuses to start on a machine without a GPU.
    args = SFTConfig(
        output_dir=str(out),
        max_steps=config.max_steps,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, callbacks=[timer])
    timer.trainer = trainer
    trainer.train()
    return {"batch": args.per_device_train_batch_size, "method": "full"}


RUNNERS = {"ragtune": run_ragtune, "trl": run_trl, "trl-defaults": run_trl_defaults}


def worker(args: argparse.Namespace) -> None:
    """Train one way and write the measurements as JSON to --result."""
    import torch
    from transformers import AutoTokenizer

    from builder.project import open_project
    from finetune.data import read_examples
    from finetune.formatting import fitting_examples
    from retrieval.models import resolve_generator_model

    project = open_project(args.project)
    config = replace(project.config.tune, max_steps=args.steps)
    model = resolve_generator_model(project.config.generation.model)
    examples = read_examples(project.tune_dir / "train.jsonl")[0][: args.examples]
    # The same examples for every trainer: ragtune leaves out the ones longer than
    # max_seq_tokens (trl would cut off their answers); so do the others.
    examples, _ = fitting_examples(
        AutoTokenizer.from_pretrained(model), examples, config.max_seq_tokens
    )
    timer = step_timer()
    with tempfile.TemporaryDirectory() as out:
        details = RUNNERS[args.worker](model, examples, config, Path(out), timer)
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
        "examples": len(examples),
        "timed_steps": last - first,
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "tokens_per_cpu_s": tokens / (timer.cpu[last] - timer.cpu[first]),
        "first_loss": timer.losses.get(first),
        "peak_mib": peak / 2**20,
        "memory": "CUDA allocated" if cuda else "RSS",
        "threads": torch.get_num_threads(),
        "settings": timer.settings,
    }
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


def bench_trainer(kind: str, project: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--worker", kind, "--project", str(project)]
        command += ["--steps", str(args.steps), "--examples", str(args.examples)]
        command += ["--result", str(result)]
        print(f"training {args.steps} steps: {KINDS[kind]} …", file=sys.stderr)
        subprocess.run(
            command, check=True, env=cli_env(args.device), cwd=ROOT, stdout=subprocess.DEVNULL
        )
        return json.loads(result.read_text(encoding="utf-8"))


# --- the sample project, its training data and a full tune -----------------------------------


def cli_env(device: str) -> dict:
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def training_data(root: Path) -> None:
    """`tune/train.jsonl` from a one-step `tune` in this process (its timing is not measured)."""
    from builder.project import open_project
    from builder.tune import tune

    print("tune with tune.max_steps=1, for its training data …", file=sys.stderr)
    tune(open_project(root, ["tune.max_steps=1"]), progress=lambda event: None)


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


def bench_synthesis(project_root: Path, teacher_chunks: int | None, device: str) -> dict:
    """Kept pairs and seconds of the rules alone and of the teacher alone, filters included."""
    from builder.engine import open_retriever
    from builder.project import open_project
    from finetune.filters import retriever_search
    from finetune.synthesize import synthesize
    from finetune.teacher import make_teacher

    project = open_project(project_root)
    retriever = open_retriever(project)
    search = retriever_search(retriever)
    chunks = list(retriever.index.store.iter_chunks())
    search(["warm-up"], 5)  # the first query pays one-off set-up
    defaults = project.config.synthesis
    if teacher_chunks is None:
        teacher_chunks = defaults.teacher_budget(len(chunks))
    rates = {}
    started = time.perf_counter()
    kept, report = synthesize(chunks, replace(defaults, teacher_questions=0), search, None)
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
        only = replace(defaults.asking_exactly(teacher_chunks), rules=False)
        started = time.perf_counter()
        kept, report = synthesize(chunks, only, search, teacher)
        seconds = time.perf_counter() - started
        rates[f"teacher on {teacher_chunks} chunks"] = (report.generated, len(kept), seconds)
    retriever.close()
    return rates


# --- the tables ------------------------------------------------------------------------------


def best(runs: list[dict]) -> dict:
    return max(runs, key=lambda run: run["tokens_per_s"])


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    print("  ".join(f"{cell:<{w}}" for cell, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip())


def trainer_rows(runs: dict[str, dict]) -> list[tuple[str, ...]]:
    rows = []
    for kind, run in runs.items():
        loss = "" if run["first_loss"] is None else f"{run['first_loss']:.4f}"
        rows.append(
            (
                KINDS[kind],
                run["method"],
                str(run["batch"]),
                f"{run['tokens_per_s']:.0f}",
                f"{run['tokens_per_cpu_s']:.0f}",
                f"{run['peak_mib']:.0f}",
                loss,
                f"{run['tokens']} tokens, {run['timed_steps']} steps, {run['seconds']:.1f} s",
            )
        )
    return rows


def setting_differences(ours: dict, plain: dict) -> list[str]:
    a, b = ours["settings"], plain["settings"]
    return [
        f"{key}: {a.get(key)} vs {b.get(key)}" for key in sorted(a | b) if a.get(key) != b.get(key)
    ]


def summary_rows(args, runs: dict[str, dict], synthesis: dict, full: dict | None) -> list[tuple]:
    ours, plain = runs["ragtune"], runs["trl"]
    speed = ours["tokens_per_s"] / plain["tokens_per_s"]
    memory = ours["peak_mib"] / plain["peak_mib"]
    differences = setting_differences(ours, plain)
    rows = [
        (
            "training data",
            f"{ours['examples']} conv.",
            "RAFT conversations of ragtune tune, the same for every trainer",
        ),
        (
            "settings that differ, ragtune vs same-settings trl",
            str(len(differences)),
            "; ".join(differences) or f"{len(ours['settings'])} compared, LoRA config included",
        ),
        (
            "tokens/s, ragtune ÷ same-settings trl",
            f"{speed:.2f}",
            "goal ≥ 1.50 " + ("✓" if speed >= 1.5 else "✗"),
        ),
        (
            "tokens per CPU-second, ragtune ÷ same-settings trl",
            f"{ours['tokens_per_cpu_s'] / plain['tokens_per_cpu_s']:.2f}",
            "less sensitive to other load",
        ),
        (
            f"peak {ours['memory']}, ragtune ÷ same-settings trl",
            f"{memory:.2f}",
            "goal ≤ 1.00 " + ("✓" if memory <= 1 else "✗"),
        ),
    ]
    if "trl-defaults" in runs:
        defaults = runs["trl-defaults"]
        rows.append(
            (
                "tokens/s, ragtune ÷ trl out of the box",
                f"{ours['tokens_per_s'] / defaults['tokens_per_s']:.2f}",
                "not like with like: full fine-tune, batch 8, loss on every token",
            )
        )
    rows.append(("torch threads", str(ours["threads"]), f"best of {args.rounds} round(s)"))
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
    parser.add_argument("--examples", type=int, default=24, help="conversations all train on")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of each trainer")
    parser.add_argument("--device", choices=("cpu", "auto"), default="cpu", help="auto: CUDA too")
    parser.add_argument(
        "--teacher-chunks",
        type=int,
        help="chunks the teacher reads (default: the project's; 0 skips)",
    )
    parser.add_argument("--skip-full-tune", action="store_true", help="no full `ragtune tune`")
    parser.add_argument(
        "--no-trl-defaults", action="store_true", help="skip the out-of-the-box trl row"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny random model, 3 steps: checks the script"
    )
    parser.add_argument("--worker", choices=tuple(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.smoke:
        single_threaded()
        args.steps, args.examples, args.skip_full_tune = 3, 8, True
        args.teacher_chunks = 1
    if args.steps < 2 or args.rounds < 1:
        sys.exit("error: --steps must be at least 2 (the first is warm-up), --rounds at least 1")

    started = time.perf_counter()
    machine = OtherLoad()
    device = "cpu" if args.device == "cpu" else "auto"
    with tempfile.TemporaryDirectory() as temporary:
        settings = [f"generation.device={device}", f"embedding.device={device}"]
        if args.smoke:
            tiny = tiny_generator(Path(temporary) / "tiny-llama")
            settings += [f"generation.model={tiny}", f"synthesis.teacher={tiny}", *SMOKE_SETTINGS]
        project = build_sample(Path(temporary), settings, args.smoke)
        full = None
        if args.skip_full_tune:
            training_data(project)
        else:
            print("full ragtune tune with the defaults …", file=sys.stderr)
            full = timed_tune(project, args.device)
        kinds = ["ragtune", "trl"] + ([] if args.no_trl_defaults else ["trl-defaults"])
        rounds: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                rounds[kind].append(bench_trainer(kind, project, args))
        synthesis = bench_synthesis(project, args.teacher_chunks, device)

    runs = {kind: best(found) for kind, found in rounds.items()}
    model = TINY_LABEL if args.smoke else GENERATOR
    print(f"\nmodel {model}, {args.steps} steps each (first excluded), {args.device}")
    print_table(
        (
            "trainer",
            "method",
            "batch",
            "tokens/s",
            "tokens/CPU-s",
            f"peak {runs['ragtune']['memory']} MiB",
            "step-1 loss",
            "timed",
        ),
        trainer_rows(runs),
    )
    print()
    rows = summary_rows(args, runs, synthesis, full)
    rows.append(machine.row())
    print_table(("measure", "value", "note"), rows)
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()

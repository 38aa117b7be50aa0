"""The `ragtune tune` and `ragtune export` subcommands."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from builder.config import ConfigError
from builder.console import err, print_style_warnings, quiet_libraries


def _console():

    return err


class _StageBars:
    """One bar per stage; training shows the loss and the trainer's ETA."""

    LABELS = {  # noqa: RUF012
        "synthesize": "synthesizing pairs",
        "format": "formatting",
        "train": "training",
    }

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        stage = event.get("stage")
        if stage not in self.LABELS or event.get("total") is None:
            if event.get("message") and stage not in ("done", "failed", "cancelled"):
                self.progress.console.print(f"[dim]{stage}: {escape(event['message'])}[/]")
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(self.LABELS[stage], total=event["total"])
        label = self.LABELS[stage]
        if event.get("loss") is not None:
            label += f"  loss {event['loss']:.3f}"
        elif event.get("message"):
            label += f"  ({event['message']})"
        self.progress.update(
            self.tasks[stage], completed=event["done"], total=event["total"], description=label
        )


def _stop_on_sigterm() -> None:
    """`kill PID` (the app's cancel button) stops like Ctrl-C: checkpoints stay resumable."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def cmd_tune(args: argparse.Namespace) -> int:
    from builder.project import open_project

    err = _console()
    project = open_project(args.project, args.set)
    data = []
    if args.data:
        from finetune.data import DataFormatError, read_examples

        for path in args.data:
            try:
                examples, skipped = read_examples(path, skip_bad=args.skip_bad_lines)
            except DataFormatError as error:
                raise ConfigError(str(path), error.problems) from error
            for problem in skipped:
                err.print(f"[yellow]skipped[/] {escape(str(path))} {escape(problem)}")
            data.extend(examples)
    _stop_on_sigterm()
    quiet_libraries()
    from builder.tune import tune
    from finetune.distributed import launched

    if not launched().is_main:
        # Under torchrun the main process shows the bars and the summary, once.
        tune(project, data=data, data_only=args.data_only, resume=args.resume)
        return 0
    print_style_warnings(project.config.style)
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    with progress:
        report = tune(
            project,
            data=data,
            data_only=args.data_only,
            resume=args.resume,
            progress=_StageBars(progress),
        )
    _print_report(report)
    return 0


def _print_report(report) -> None:
    err = _console()
    for stage, what in report.stages.items():
        err.print(f"{stage:<11} {what}")
    synthesis = report.synthesis
    if synthesis:
        dropped = ", ".join(f"{n} {why}" for why, n in synthesis.get("dropped", {}).items())
        err.print(
            f"pairs: {synthesis.get('generated', 0)} generated, {synthesis.get('kept', 0)} kept"
            + (f" (dropped: {escape(dropped)})" if dropped else "")
        )
        by = ", ".join(f"{n} {name}" for name, n in synthesis.get("kept_by", {}).items())
        kinds = ", ".join(f"{n} {kind}" for kind, n in synthesis.get("kept_by_kind", {}).items())
        if by:
            err.print(f"kept by source: {escape(by)}; by type: {escape(kinds)}")
        if synthesis.get("files"):
            err.print(
                f"files with a kept pair: {synthesis['files_covered']} of {synthesis['files']}"
            )
    trained = (report.format or {}).get("pairs_by_kind")
    if trained:
        kinds = ", ".join(f"{n} {kind}" for kind, n in trained.items())
        err.print(f"training pairs by type: {escape(kinds)}")
    own = (report.format or {}).get("own_answers")
    if own:
        err.print(_own_answers_line(own))
    if report.split:
        err.print(
            f"split: {report.split['train']} train pairs, {report.split['eval']} held out for "
            "`ragtune eval`"
        )
    style = report.style or {}
    if style.get("pairs"):
        err.print(
            f"style: {style['rewritten']} of {style['pairs'] - style['not_rewritten']} answers "
            f"rewritten in the voice ({style['kept_original']} kept as written: "
            f"{style['lost_facts']} lost a fact, {style['added_facts']} added one, "
            f"{style.get('unchanged', 0)} came back unchanged); mean length "
            f"{style['words_before']} → {style['words_after']} words"
        )
    identity = (report.format or {}).get("identity_examples")
    if identity:
        err.print(f"identity examples: {identity} (who the assistant is, in both layouts)")
    card = report.card
    if card.get("steps"):
        # Cards of runs before `epochs` was recorded say steps only.
        epochs = f" ({card['epochs']:g} epochs)" if card.get("epochs") is not None else ""
        err.print(
            f"trained {card['steps']} optimizer steps{epochs} on {card['examples']} examples in "
            f"{card['seconds']:.0f}s, final loss {card['loss_curve'][-1][1]:.3f}"
            if card.get("loss_curve")
            else f"trained {card['steps']} optimizer steps{epochs}"
        )
    if card.get("processes"):
        err.print(f"world size {card['processes']} ({card.get('distributed', 'NO')})")
    for note in card.get("notes") or []:
        err.print(f"[yellow]note:[/] {escape(note)}")
    if "forgetting" in card:
        err.print(card["forgetting"]["summary"])
    selector = card.get("selector")
    if selector:
        from_pairs = selector.get("from_pairs", selector["triplets"])
        persona = (
            f" + {selector['identity']} identity questions" if selector.get("identity") else ""
        )
        err.print(
            f"evidence selector: triplets from {from_pairs} of {selector['pairs']} training "
            f"pairs{persona}, {selector['steps']} steps in {selector['seconds']:.0f}s (the tuned "
            "modes quote with it)"
        )
    gate = card.get("quote_gate")
    if gate is not None:
        err.print(_quote_gate_line(gate))
    err.print(f"adapter: {escape(str(report.run_dir / 'adapter'))} (now the project's current)")


def _quote_gate_line(bounds: dict) -> str:
    """The quote gate's bounds and how they split the training pairs' cases."""
    parts = [
        f"{name} {b['bound']:.3f} (keeps {b['kept']:.0%} of {b['answerable']} answerable quotes, "
        f"refuses {b['refused']:.0%} of {b['lacking']} with the document left out)"
        for name, b in sorted(bounds.items())
        if b
    ]
    if not parts:
        return "quote gate: no bound (the training pairs did not tell the cases apart)"
    return "quote gate: " + "; ".join(parts)


def _own_answers_line(own: dict) -> str:
    """What the model's own answers did to the cited training targets."""
    cited = own["cited_examples"]
    if own.get("fallback"):
        return (
            f"own answers: none of {cited} passed the checks; trained on the synthesized "
            "answers (see tune/own_answers.jsonl)"
        )
    retried = own.get("hint", 0) + own.get("focused", 0)
    misses = ", ".join(f"{n} {why}" for why, n in sorted((own.get("misses") or {}).items()))
    line = (
        f"own answers: {own['own'] + retried} of {cited} cited targets in the model's own words "
        f"({own['own']} first answers, {retried} on a retry); {own['dropped']} dropped, "
        f"{own['kept_pair']} kept as synthesized, "
        + (f"{own['kept_styled']} kept as restyled, " if own.get("kept_styled") else "")
        + (f"{own['kept_yes_no']} yes/no kept as synthesized, " if own.get("kept_yes_no") else "")
        + f"{own['others_left_out']} refusal or "
        "closed-book examples thinned to match"
        + (f", {own['seconds']:.0f} s" if "seconds" in own else "")
    )
    return line + (f" (misses: {escape(misses)})" if misses else "")


def cmd_export(args: argparse.Namespace) -> int:
    from builder.export import export_adapter, export_dataset, export_merged
    from builder.project import open_project

    err = _console()
    project = open_project(args.project, args.set)
    if args.gguf is not None:
        return _export_gguf(project, args)
    if args.dataset:
        for path in export_dataset(project, args.out, args.dataset):
            err.print(f"wrote {escape(str(path))}")
        return 0
    if args.merge:
        quiet_libraries()
        out = export_merged(project, args.out)
        err.print(f"merged model: {escape(str(out))} (AutoModelForCausalLM.from_pretrained)")
    else:
        out = export_adapter(project, args.out)
        err.print(f"adapter: {escape(str(out))} (PeftModel.from_pretrained(base, DIR))")
    return 0


def _export_gguf(project, args: argparse.Namespace) -> int:
    from builder.gguf_export import export_gguf
    from builder.gguf_merged import export_merged_gguf

    err = _console()
    if args.dataset:
        err.print("[red]error:[/] --gguf exports a model; --dataset exports with --out DIR")
        return 2
    quiet_libraries()
    if args.merge:
        model, modelfile, readme = export_merged_gguf(project, args.gguf, args.outtype or "f16")
        err.print(f"merged GGUF: {escape(str(model))} (llama-server -m FILE)")
        err.print(f"Ollama: {escape(str(modelfile))} (ollama create NAME -f Modelfile)")
        err.print(f"commands: {escape(str(readme))}")
        return 0
    if args.outtype == "q8_0":
        err.print("[red]error:[/] --outtype q8_0 is for --merge; a GGUF LoRA is f32 or f16")
        return 2
    adapter, modelfile, readme = export_gguf(project, args.gguf, args.outtype or "f32")
    err.print(f"GGUF LoRA: {escape(str(adapter))} (llama-server -m BASE.gguf --lora FILE)")
    err.print(f"Ollama: {escape(str(modelfile))} (ollama create NAME -f Modelfile)")
    err.print(f"commands: {escape(str(readme))}")
    return 0


def add_commands(add) -> None:
    """Register `tune` and `export` with the CLI's `add(name, help, handler)` helper."""
    tune = add("tune", "Tune the generator on the project's documents (resumable).", cmd_tune)
    tune.add_argument(
        "--data",
        type=Path,
        action="append",
        help="your own pairs (alpaca, ShareGPT or messages JSONL), trained beside the "
        "synthesized ones; repeatable",
    )
    tune.add_argument(
        "--data-only", action="store_true", help="train on --data alone, no synthesis"
    )
    tune.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="train on the good lines of a --data file that has bad ones",
    )
    tune.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its newest complete checkpoint",
    )

    export = add("export", "Export the adapter, a merged model, or the training data.", cmd_export)
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="target folder")
    target.add_argument(
        "--gguf",
        type=Path,
        metavar="OUT",
        help="target folder for the adapter as a llama.cpp GGUF LoRA (with --merge: the merged "
        "model as one GGUF), an Ollama Modelfile and a README with the llama-server and ollama "
        "commands",
    )
    export.add_argument(
        "--outtype",
        choices=["f32", "f16", "q8_0"],
        help="GGUF tensor type with --gguf: f32 (the LoRA's default: exact) or f16; with --merge "
        "--gguf also q8_0 (the merged model's default: f16)",
    )
    export.add_argument(
        "--merge", action="store_true", help="merge the adapter into the base weights"
    )
    export.add_argument(
        "--dataset",
        choices=["sharegpt", "messages", "alpaca"],
        help="export the training conversations instead (LLaMA-Factory / ms-swift JSONL)",
    )

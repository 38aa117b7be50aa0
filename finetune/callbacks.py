"""Trainer callbacks: mark finished checkpoints, and report progress as plain dicts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from finetune.checkpoints import mark_complete


class MarkCompleteCallback(TrainerCallback):
    """Writes the COMPLETE marker into each checkpoint once the Trainer has finished saving it
    (weights, optimizer, scheduler, RNG and trainer state): `on_save` runs after all of them.

    Under a launcher each process writes its own RNG state into the checkpoint, so the main
    process marks it only once every process got here."""

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
        if state.is_world_process_zero:
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class ReportCallback(TrainerCallback):
    """Calls `report` after every logged step with
    {"step", "max_steps", "loss", "epoch", "eta_s", "learning_rate"} and keeps the token count
    that trl logs, for the throughput of the run."""

    def __init__(self, report: Callable[[dict], None] | None = None) -> None:
        self.report = report
        self.tokens = 0
        self._started = 0.0
        self._first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.monotonic()
        # After a resume global_step starts at the checkpoint: time only the steps run here.
        self._first_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        self.tokens = int(logs.get("num_tokens", self.tokens))
        if "loss" not in logs or self.report is None:
            return
        done = state.global_step - self._first_step
        per_step = (time.monotonic() - self._started) / done if done else 0.0
        self.report(
            {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "loss": logs["loss"],
                "epoch": state.epoch,
                "eta_s": per_step * (state.max_steps - state.global_step),
                "learning_rate": logs.get("learning_rate"),
            }
        )

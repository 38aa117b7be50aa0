"""The files of a project's `tune/` folder, the report of one `tune` call and its error: shared
by the tune stages (`builder.tune`, `builder.tune_format`) and the commands that read their
outputs (`ragtune eval`, `ragtune export`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PAIRS = "pairs.jsonl"
TRAIN_PAIRS = "train_pairs.jsonl"
EVAL_QUESTIONS = "eval_questions.jsonl"
TRAIN_SET = "train.jsonl"
STATUS = "status.json"
RUN_CARD = "run_card.json"
SELECTOR = "selector"
"""The run folder's evidence selector (a sentence-transformers model, `finetune.selector`)."""
SELECTOR_STAMP = "selector.json"

Progress = Callable[[dict[str, Any]], None]


class TuneError(Exception):
    """Tuning cannot run as asked; the message says what to do."""


@dataclass
class TuneReport:
    """What one `tune` call did, stage by stage."""

    stages: dict[str, str] = field(default_factory=dict)
    """stage → 'ran' or 'skipped (inputs unchanged)'."""
    synthesis: dict[str, Any] = field(default_factory=dict)
    split: dict[str, int] = field(default_factory=dict)
    style: dict[str, Any] = field(default_factory=dict)
    format: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    card: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir) if self.run_dir else None
        return data

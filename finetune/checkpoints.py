"""Which checkpoint a run can resume from.

The Trainer writes `checkpoint-N/` file by file; a crash in the middle leaves a folder that looks
like a checkpoint but cannot be loaded. So a checkpoint counts only once it holds the `COMPLETE`
marker, written (after an fsync of every file) when the Trainer reports the save as finished.
The settings that shape the weights are kept next to the checkpoints, so that resuming with
different ones fails with a clear message instead of a shape error deep in the loader.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

MARKER = "COMPLETE"
RUN_FILE = "run.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class ResumeError(Exception):
    """The checkpoints in a run folder cannot be used as asked; the message says what to do."""


def step_of(folder: Path) -> int:
    """The optimizer step of a `checkpoint-N` folder."""
    match = _CHECKPOINT.fullmatch(Path(folder).name)
    if match is None:
        raise ValueError(f"{folder} is not a checkpoint-N folder")
    return int(match.group(1))


def checkpoint_folders(root: Path) -> list[Path]:
    """Every `checkpoint-N` folder under `root`, oldest step first."""
    if not Path(root).is_dir():
        return []
    found = [p for p in Path(root).iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=step_of)


def is_complete(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def latest_complete(root: Path) -> Path | None:
    """The newest checkpoint under `root` that holds the marker, or None."""
    complete = [folder for folder in checkpoint_folders(root) if is_complete(folder)]
    return complete[-1] if complete else None


def mark_complete(folder: Path) -> None:
    """Flush every file of a fully written checkpoint to disk, then write the marker."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    with open(folder / MARKER, "w", encoding="utf-8") as handle:
        handle.write(f"step {step_of(folder)}\n")
        handle.flush()
        os.fsync(handle.fileno())


def check_run_settings(root: Path, settings: dict[str, object]) -> list[str]:
    """Compare `settings` with those recorded by the run that wrote the checkpoints in `root`.

    Returns:
        One line per setting that differs ('lora_rank: checkpoints 16, now 8'); empty when they
        match or nothing was recorded.
    """
    path = Path(root) / RUN_FILE
    if not path.is_file():
        return []
    recorded = json.loads(path.read_text(encoding="utf-8"))
    return [
        f"{key}: checkpoints {recorded.get(key)!r}, now {value!r}"
        for key, value in settings.items()
        if recorded.get(key) != value
    ]


def record_run_settings(root: Path, settings: dict[str, object]) -> None:
    """Keep the settings that shape the weights next to the checkpoints (see check_run_settings)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / RUN_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def resume_point(
    root: Path, resume: bool, settings: dict[str, object]
) -> tuple[Path | None, list[str]]:
    """Decide where a run starts, removing checkpoints that were never finished.

    Args:
        root: the checkpoints folder.
        resume: continue the run found in `root`; without it `root` must hold no checkpoint.
        settings: the settings that shape the weights (see check_run_settings).

    Returns:
        The checkpoint to resume from (None: from scratch) and notes on what was decided.

    Raises:
        ResumeError: checkpoints exist but `resume` is False, or they were written with other
            `settings`.
    """
    folders = checkpoint_folders(root)
    if not resume:
        if folders:
            raise ResumeError(
                f"{root} holds checkpoints of an earlier run: pass resume=True (--resume) to "
                "continue it, or choose another output folder"
            )
        return None, []
    differences = check_run_settings(root, settings)
    if folders and differences:
        raise ResumeError(
            f"cannot resume from {root}: these settings differ from the run that wrote it:\n"
            + "\n".join(f"  - {line}" for line in differences)
            + "\nresume with the same settings, or start a new run in another output folder"
        )
    latest = latest_complete(root)
    notes = []
    for folder in folders:
        if not is_complete(folder):
            # A crash while saving leaves a folder that cannot be loaded; the Trainer would
            # otherwise write the same step into it again on top of the debris.
            shutil.rmtree(folder)
            notes.append(f"removed {folder.name}: the run stopped while saving it")
    if latest is None:
        notes.append(f"no complete checkpoint in {root}: started from scratch")
    else:
        notes.append(f"resumed from {latest.name}")
    return latest, notes

"""`ragtune export`: the tuned adapter alone, merged into the base weights, or the training
data as JSONL that LLaMA-Factory and ms-swift read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from builder.project import Project
from builder.tune_layout import EVAL_QUESTIONS, RUN_CARD, TRAIN_SET

DATASET_FORMATS = ("sharegpt", "messages", "alpaca")


class ExportError(Exception):
    """Nothing to export, or a target that would overwrite something."""


def _current_adapter(project: Project) -> Path:
    adapter = project.current_adapter()
    if adapter is None:
        raise ExportError(f"{project.root} has no tuned adapter yet: run `ragtune tune` first")
    return adapter


def _fresh_target(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty: give a new folder")
    out.mkdir(parents=True, exist_ok=True)


def export_adapter(project: Project, out: Path) -> Path:
    """Copy the current adapter (safetensors + tokenizer) and its run card into `out`; it loads
    with `PeftModel.from_pretrained(base_model, out)`."""
    adapter = _current_adapter(project)
    _fresh_target(out)
    shutil.copytree(adapter, out, dirs_exist_ok=True)
    card = adapter.parent / RUN_CARD
    if card.is_file():
        shutil.copy2(card, out / RUN_CARD)
    return out


def export_merged(project: Project, out: Path) -> Path:
    """Merge the current adapter into the base weights and save a plain Hugging Face model
    folder that `AutoModelForCausalLM.from_pretrained(out)` loads without peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from retrieval.models import resolve_generator_model

    adapter = _current_adapter(project)
    _fresh_target(out)
    config = project.config.generation
    base_path = resolve_generator_model(config.model)
    base = AutoModelForCausalLM.from_pretrained(
        base_path, dtype="auto", trust_remote_code=config.trust_remote_code
    )
    if not (adapter / "adapter_config.json").is_file():  # method=full: already a whole model
        shutil.copytree(adapter, out, dirs_exist_ok=True)
        return out
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(out)
    return out


def export_dataset(project: Project, out: Path, fmt: str) -> list[Path]:
    """Write the training conversations in `fmt`, the held-out questions, and a LLaMA-Factory
    `dataset_info.json` entry naming the training file."""
    from finetune.data import read_examples, write_examples_jsonl

    if fmt not in DATASET_FORMATS:
        raise ExportError(f"unknown dataset format {fmt!r}: choose {', '.join(DATASET_FORMATS)}")
    source = project.tune_dir / TRAIN_SET
    if not source.is_file():
        raise ExportError(f"{source} does not exist: run `ragtune tune {project.root}` first")
    out.mkdir(parents=True, exist_ok=True)
    examples, _ = read_examples(source)
    target = out / f"ragtune_train.{fmt}.jsonl"
    write_examples_jsonl(examples, target, fmt)
    written = [target]
    info = {"file_name": target.name}
    if fmt == "sharegpt":
        info |= {"formatting": "sharegpt", "columns": {"messages": "conversations"}}
    elif fmt == "messages":
        info |= {
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    else:
        info |= {"columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    (out / "dataset_info.json").write_text(json.dumps({"ragtune": info}, indent=2) + "\n")
    written.append(out / "dataset_info.json")
    held_out = project.tune_dir / EVAL_QUESTIONS
    if held_out.is_file():
        shutil.copy2(held_out, out / EVAL_QUESTIONS)
        written.append(out / EVAL_QUESTIONS)
    return written

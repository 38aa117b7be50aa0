"""Input stamps of resumable stages: a stage records a hash of its inputs beside its outputs,
and is skipped when they did not change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from retrieval.index import write_atomic


def digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2, default=str).encode("utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def up_to_date(stamp: Path, inputs: str, *outputs: Path) -> bool:
    return read_json(stamp).get("inputs") == inputs and all(p.is_file() for p in outputs)

"""How modes, metrics, numbers and intervals read in the report, the terminal and sentences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eval.metrics import METRIC_INFO, MetricInfo

_PART_LABELS = {"rag": "RAG", "base": "Base", "tuned": "Tuned"}


def mode_label(mode: str) -> str:
    """'rag+tuned' -> 'RAG+tuned', 'base' -> 'Base', 'rag' -> 'RAG'."""
    parts = mode.split("+")
    first = _PART_LABELS.get(parts[0], parts[0][:1].upper() + parts[0][1:])
    rest = ["RAG" if part == "rag" else part for part in parts[1:]]
    return "+".join([first, *rest])


def metric_info(key: str) -> MetricInfo:
    """The report's description of a metric; an unknown key reads as itself, no direction."""
    return METRIC_INFO.get(key) or MetricInfo(key, key.replace("_", " "), None, bounded=False)


def short_numbers(*values: float) -> list[str]:
    """The values with one precision: two decimals, three when the first is below 0.1 so that a
    small difference does not read as 0.00."""
    decimals = 2 if values[0] == 0 or abs(values[0]) >= 0.1 else 3
    return [f"{value:.{decimals}f}" for value in values]


def format_interval(cell: Mapping[str, Any], questions: int | None = None) -> str:
    """'0.620 [0.550, 0.690] n=40': the mean, its interval and how many questions it is over."""
    if cell["mean"] is None:
        return "n/a"
    text = f"{cell['mean']:.3f}"
    if cell["low"] is not None:
        text += f" [{cell['low']:.3f}, {cell['high']:.3f}]"
    if questions is not None:
        text += f" n={cell['n']}"
    return text

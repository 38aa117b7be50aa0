"""The latest evaluation report of a project, as tables and chart data for the app."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.project import Project
from eval.labels import format_interval, metric_info, mode_label

LATEST_REPORT = "LATEST"
"""The file in a project's reports folder that names its newest report's folder."""


def latest_report(project: Project) -> Path | None:
    """The folder of the newest evaluation report, or None."""
    pointer = project.reports_dir / LATEST_REPORT
    if not pointer.is_file():
        return None
    folder = project.reports_dir / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / "report.json").is_file() else None


class ReportError(Exception):
    """A report file that cannot be read; the message says what to do."""


@dataclass
class Report:
    """One saved evaluation (`ragtune eval`), as written by eval/report.py."""

    folder: Path
    data: dict[str, Any]

    @property
    def run(self) -> str:
        return self.folder.name

    @property
    def html_path(self) -> Path | None:
        path = self.folder / "report.html"
        return path if path.is_file() else None

    @property
    def summary(self) -> dict[str, Any]:
        return self.data["summary"]

    @property
    def sentences(self) -> list[str]:
        return list(self.data.get("sentences") or [])


def open_latest_report(project: Project) -> Report | None:
    """The project's newest evaluation report, or None when `ragtune eval` never ran.

    Raises:
        ReportError: report.json is not valid JSON or has no summary.
    """
    folder = latest_report(project)
    if folder is None:
        return None
    path = folder / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"{path} cannot be read ({error}); run `ragtune eval` again") from error
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        raise ReportError(f"{path} has no summary; run `ragtune eval` again")
    return Report(folder, data)


def summary_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """One row per metric: its label, then each mode's 'mean [low, high]'."""
    questions = summary.get("questions")
    return [
        {
            "metric": metric_info(key).label,
            **{
                mode_label(mode): format_interval(summary["per_mode"][mode][key], questions)
                for mode in summary["modes"]
            },
        }
        for key in summary["metrics"]
    ]


def metric_means(summary: dict[str, Any], key: str) -> dict[str, float]:
    """Each mode's mean of one metric (modes without a value left out), for a bar chart."""
    means = {}
    for mode in summary["modes"]:
        mean = summary["per_mode"][mode].get(key, {}).get("mean")
        if mean is not None:
            means[mode_label(mode)] = float(mean)
    return means

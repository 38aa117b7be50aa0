"""report.html: one self-contained page (inline CSS and SVG, no script, no external resource).

Answers, questions and document text may be hostile, so every piece of text goes through
`html.escape`, and a Content-Security-Policy forbids scripts and fetches should anything slip.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from eval.charts import bar_chart
from eval.labels import format_interval, metric_info, mode_label
from eval.style import style_rows

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em;
       color: #222; }
h1, h2 { font-weight: 600; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { border: 1px solid #eee; }
.answer { white-space: pre-wrap; }
.scores, .meta { color: #555; font-size: 12px; }
.refused { color: #a33; font-weight: 600; }
.verdict-better, .verdict-higher { color: #17692a; }
.verdict-worse, .verdict-lower { color: #a33; }
details { font-size: 12px; }
ol.citations { margin: 4px 0; padding-left: 1.4em; }
"""
# default-src 'none' blocks scripts, images, fonts and fetches; only the inline style may apply.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_ROW_SCORES = (("correct", "correct"), ("token_f1", "F1"), ("faithfulness", "faithful"))


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A table of already-escaped cells; columns from `numeric_from` on are right-aligned."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i >= numeric_from else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _meta(meta: Mapping[str, Any]) -> str:
    items = "".join(
        f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in meta.items()
    )
    return f'<table class="meta">{items}</table>' if items else ""


def _charts(summary: Mapping[str, Any]) -> str:
    modes = summary["modes"]
    labels = [mode_label(mode) for mode in modes]
    charts = []
    for key in summary["metrics"]:
        info = metric_info(key)
        cells = [summary["per_mode"][mode][key] for mode in modes]
        charts.append(
            bar_chart(
                info.label,
                labels,
                [(c["mean"], c["low"], c["high"]) for c in cells],
                1.0 if info.bounded else None,
            )
        )
    return f'<div class="charts">{"".join(charts)}</div>'


def _metric_table(summary: Mapping[str, Any]) -> str:
    modes, questions = summary["modes"], summary["questions"]
    rows = [
        [
            _e(metric_info(key).label),
            *(_e(format_interval(summary["per_mode"][mode][key], questions)) for mode in modes),
        ]
        for key in summary["metrics"]
    ]
    return _table(["metric", *(_e(mode_label(mode)) for mode in modes)], rows)


def _comparison_table(summary: Mapping[str, Any]) -> str:
    rows = []
    for c in summary["comparisons"]:
        if c["mean"] is None:
            continue
        interval = "" if c["low"] is None else f"{c['low']:.3f} to {c['high']:.3f}"
        verdict = f'<span class="verdict-{_e(c["verdict"].split()[0])}">{_e(c["verdict"])}</span>'
        rows.append(
            [
                _e(f"{mode_label(c['a'])} vs {mode_label(c['b'])}"),
                _e(metric_info(c["metric"]).label),
                f"{c['mean']:+.3f}",
                _e(interval),
                str(c["n"]),
                _e(c.get("role", "")),
                "" if c.get("p_holm") is None else f"{c['p_holm']:.3f}",
                verdict,
            ]
        )
    header = ["modes (a vs b)", "metric", "a - b", "CI", "n", "role", "Holm p", "verdict"]
    return _table(header, rows, numeric_from=2)


def _definitions(report: Mapping[str, Any]) -> str:
    labels = {key: metric_info(key).label for key in report["definitions"]}
    labels["sources"] = "source matching"
    items = "".join(
        f"<dt><b>{_e(labels[key])}</b></dt><dd>{_e(text)}</dd>"
        for key, text in report["definitions"].items()
    )
    boot = report["summary"]["bootstrap"]
    method = (
        f"Intervals are {boot['confidence']:.0%} percentile bootstrap intervals over the "
        f"questions ({boot['samples']} resamples, seed {boot['seed']}). A difference a - b is "
        "taken over the questions where both modes have a value, resampling the same questions "
        "for both (paired bootstrap); it is called better or worse only when its interval "
        "excludes 0. One comparison was named before any data, the headline: RAG+tuned vs RAG "
        "on correctness (without both modes, the first pair present). The others are "
        "exploratory: a finding claims a difference only when its bootstrap p-value, "
        "Holm-adjusted over the exploratory focus comparisons, is below 1 - confidence as well. "
        "Each mean leaves out the questions where the metric is undefined; n says how many "
        "remain."
    )
    return f"<dl>{items}</dl><p>{_e(method)}</p>"


def _citations(citations: list[Mapping[str, Any]]) -> str:
    if not citations:
        return ""
    items = []
    for c in citations:
        where = str(c.get("source", ""))
        if c.get("page") is not None:
            where += f", p. {c['page']}"
        if c.get("section"):
            where += f", {c['section']}"
        body = f"[{_e(c.get('n', ''))}] {_e(where)}"
        if c.get("snippet") or c.get("text"):
            body += (
                f"<details><summary>{_e(c.get('snippet') or 'chunk')}</summary>"
                f'<div class="answer">{_e(c.get("text", ""))}</div></details>'
            )
        items.append(f"<li>{body}</li>")
    return f'<ol class="citations">{"".join(items)}</ol>'


def _answer_cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return ""
    parts = [f'<div class="answer">{_e(entry["answer"])}</div>']
    parts.append(_citations(entry.get("citations") or []))
    metrics = entry.get("metrics") or {}
    scores = [
        f"{name} {metrics[key]:.2f}" for key, name in _ROW_SCORES if metrics.get(key) is not None
    ]
    if entry.get("latency_s") is not None:
        scores.append(f"{entry['latency_s']:.2f} s")
    refused = '<span class="refused">refused</span> ' if metrics.get("refusal") else ""
    parts.append(f'<div class="scores">{refused}{_e(" · ".join(scores))}</div>')
    return "".join(parts)


def _question_table(report: Mapping[str, Any]) -> str:
    modes = report["summary"]["modes"]
    rows = []
    for number, q in enumerate(report["questions"], 1):
        gold = ", ".join(q.get("sources") or [])
        asked = f"<b>{_e(q['question'])}</b><br>reference: {_e(q['reference'])}" + (
            f'<div class="scores">gold: {_e(gold)}</div>' if gold else ""
        )
        answers = [_answer_cell(q["modes"].get(mode)) for mode in modes]
        rows.append([str(number), asked, *answers])
    header = ["#", "question", *(_e(mode_label(mode)) for mode in modes)]
    return _table(header, rows, numeric_from=len(header))


def _style_section(style: Mapping[str, Any] | None) -> str:
    if not style:
        return ""
    header = [
        "mode",
        "names the persona",
        "mean answer words",
        "in the answer language",
        "voice (judge, 1-5)",
    ]
    rows = [[_e(cell) for cell in row] for row in style_rows(style)]
    return "<h2>Style</h2>" + _table(header, rows)


def render_html(report: Mapping[str, Any]) -> str:
    """The report page.

    Args:
        report: the dict saved as report.json: meta, definitions, summary, sentences, questions.

    Returns:
        A complete HTML document.
    """
    summary = report["summary"]
    findings = "".join(f"<li>{_e(sentence)}</li>" for sentence in report["sentences"])
    source = report["meta"].get("questions_source")
    sections = [
        "<h1>ragtune evaluation</h1>",
        f"<p><strong>{_e(source)}</strong></p>" if source else "",
        _meta(report["meta"]),
        f"<p>{summary['questions']} questions, modes: "
        f"{_e(', '.join(mode_label(m) for m in summary['modes']))}.</p>",
        "<h2>Findings</h2>",
        f"<ul>{findings}</ul>" if findings else "<p>No pair of modes could be compared.</p>",
        "<h2>Metrics per mode</h2>",
        _charts(summary),
        _metric_table(summary),
        "<h2>Differences between modes</h2>",
        _comparison_table(summary),
        _style_section(report.get("style")),
        "<h2>How each metric is computed</h2>",
        _definitions(report),
        "<h2>Answers per question</h2>",
        _question_table(report),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ragtune evaluation</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )

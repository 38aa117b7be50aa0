"""Inline SVG bar charts with error bars: no script, no external resource, every label escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Distinguishable in colour and in grey; one per mode in the report's order.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#e15759")

_WIDTH, _HEIGHT = 340, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 10, 28, 34


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least `value` (1.0 for <= 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def bar_chart(
    title: str,
    labels: Sequence[str],
    intervals: Sequence[tuple[float | None, float | None, float | None]],
    y_max: float | None = None,
) -> str:
    """One bar per label at its mean, with an error bar from low to high.

    Args:
        title: shown above the bars.
        labels: one per bar (the modes).
        intervals: (mean, low, high) per bar; a None mean draws no bar ('n/a'), None bounds no
            error bar.
        y_max: top of the axis; None scales to the largest value.

    Returns:
        An `<svg>` element as text.
    """
    if y_max is None:
        tops = [v for interval in intervals for v in (interval[0], interval[2]) if v is not None]
        y_max = nice_ceiling(max(tops, default=0.0))
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    base = _TOP + plot_h

    def y(value: float) -> float:
        return base - plot_h * min(max(value, 0.0), y_max) / y_max

    parts = [
        f'<svg class="chart" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(title)}" '
        'font-family="sans-serif" font-size="11" fill="#333">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_WIDTH / 2}" y="16" text-anchor="middle" font-weight="bold" font-size="12">'
        f"{escape(title)}</text>",
    ]
    for tick in (0.0, y_max / 2, y_max):
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{_LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{_number(tick)}</text>'
        )
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * 0.6
    for index, (label, (mean, low, high)) in enumerate(zip(labels, intervals)):
        x = _LEFT + slot * index + (slot - bar_w) / 2
        middle = x + bar_w / 2
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<text x="{middle:.1f}" y="{base + 16}" text-anchor="middle">{escape(label)}</text>'
        )
        if mean is None:
            parts.append(f'<text x="{middle:.1f}" y="{base - 4}" text-anchor="middle">n/a</text>')
            continue
        parts.append(
            f'<rect x="{x:.1f}" y="{y(mean):.1f}" width="{bar_w:.1f}" '
            f'height="{base - y(mean):.1f}" fill="{colour}"/>'
        )
        label_y = y(mean)
        if low is not None and high is not None:
            cap = bar_w / 4
            parts.append(
                f'<path d="M{middle:.1f} {y(low):.1f}V{y(high):.1f}'
                f"M{middle - cap:.1f} {y(low):.1f}h{2 * cap:.1f}"
                f'M{middle - cap:.1f} {y(high):.1f}h{2 * cap:.1f}" class="error" stroke="#222" '
                'stroke-width="1.5" fill="none"/>'
            )
            label_y = min(label_y, y(high))
        parts.append(
            f'<text x="{middle:.1f}" y="{max(label_y - 4, _TOP - 2):.1f}" '
            f'text-anchor="middle">{_number(mean)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)

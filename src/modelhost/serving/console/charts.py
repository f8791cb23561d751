"""The console's own small charts, as inline SVG: a traffic split bar and lines over
steps. SVG keeps them inside the content security policy (no inline style, no script)
and readable without JavaScript; each mark has its numbers in a ``<title>``, which the
browser shows on hover. The monitoring page draws with the report's charts
(:mod:`modelhost.monitoring.report_html`)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

PALETTE = ("#2563eb", "#ea580c", "#059669", "#9333ea", "#b45309", "#0891b2", "#db2777",
           "#475569")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def split_bar(traffic: Sequence[tuple[str, float]]) -> str:
    """One bar split by each version's share of live traffic (sized in percent, so that
    it fills its container at any width without stretching the labels)."""
    parts = ['<svg class="split" width="100%" height="34" role="img" '
             f'aria-label="{"traffic split" if traffic else "no traffic"}">']
    if not traffic:
        parts.append('<rect width="100%" height="100%" fill="#e2e8f0"/>')
    x = 0.0
    for i, (version, share) in enumerate(traffic):
        label = f"{version}: {share * 100:.1f}% of traffic"
        parts.append(f'<rect x="{x * 100:.3f}%" width="{share * 100:.3f}%" height="100%" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"><title>{_e(label)}</title></rect>')
        if share >= 0.12:
            parts.append(f'<text x="{x * 100 + 1:.3f}%" y="22" class="on-bar">'
                         f'{_e(version)} {share * 100:.0f}%</text>')
        x += share
    parts.append("</svg>")
    return "".join(parts)


def lines(series: Sequence[tuple[str, Sequence[tuple[int, float]]]], *, title: str,
          width: int = 560, height: int = 220) -> str:
    """Each series' points (step, value) as a line with its points marked."""
    points = [(x, y) for _, pts in series for x, y in pts if math.isfinite(y)]
    left, right, top, bottom = 56, 12, 12, 28
    head = (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{_e(title)}">')
    if not points:
        return (f'{head}<text x="{width / 2}" y="{height / 2}" class="empty">no values'
                f'</text></svg>')
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    if y0 == y1:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    y_step = nice_step((y1 - y0) / 4)
    y0, y1 = math.floor(y0 / y_step) * y_step, math.ceil(y1 / y_step) * y_step
    x_step = max(1.0, nice_step((x1 - x0) / 6))  # steps are whole numbers
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [head]
    for y in _range(y0, y1, y_step):
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" '
                     f'y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
                     f'<text class="yl" x="{left - 6}" y="{py(y) + 4:.1f}">{y:.4g}</text>')
    for x in _range(math.ceil(x0 / x_step) * x_step, x1, x_step):
        parts.append(f'<text class="xl" x="{px(x):.1f}" y="{height - 8}">{x:.4g}</text>')
    for i, (label, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        shown = [(x, y) for x, y in pts if math.isfinite(y)]
        if len(shown) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in shown)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{path}"/>')
        for x, y in shown:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" '
                         f'fill="{colour}"><title>{_e(label)} step {x}: {y:.6g}</title>'
                         f'</circle>')
    parts.append("</svg>")
    return "".join(parts)


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least ``raw``."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)


def _range(start: float, stop: float, step: float) -> list[float]:
    """start, start + step, ... up to stop (inclusive, within rounding)."""
    count = math.floor((stop - start) / step + 1e-9) + 1
    return [round(start + i * step, 12) for i in range(max(count, 0))]

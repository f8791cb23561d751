"""The monitoring report drawn as one HTML page: inline CSS, charts as inline SVG drawn
here, no script and no external reference (it opens offline and can be mailed). Each
chart's numbers show on hover (SVG ``<title>``), and tables hold what a reader would
rather read. Every string that comes from users (model, version and column names,
categories, the reference's source) is escaped. The numbers come from
:mod:`modelhost.monitoring.report`.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Iterable, Sequence

from modelhost.monitoring.report import (
    MAX_CATEGORIES,
    MAX_FEATURE_CHARTS,
    Distribution,
    Report,
    drift_score,
)
from modelhost.monitoring.report import format_duration as _duration_text
from modelhost.monitoring.report import format_number as _num
from modelhost.stats.drift import ColumnDrift

# --- rendering ----------------------------------------------------------------------------

_REFERENCE = "#94a3b8"
_LIVE = "#2563eb"
_ERROR = "#dc2626"
_P99 = "#ea580c"
_QUALITY = "#059669"
_DRIFT = "#b45309"


def render_html(report: Report) -> str:
    """``report`` as one self-contained HTML page (no script, no external reference)."""
    r = report
    title = f"{r.model} {r.version}: monitoring report, last {r.window}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        "<main>", render_sections(r), "</main>", "</body>", "</html>"]
    return "\n".join(p for p in parts if p) + "\n"


def render_sections(report: Report) -> str:
    """The report's sections without the page around them (the web console shows them
    in its own page, styled by :data:`REPORT_CSS`)."""
    r = report
    parts = [_header(r), _traffic(r), _drift(r), _distributions(r), _quality(r),
             _numbers(r), _footer(r)]
    return "\n".join(p for p in parts if p)


def _header(r: Report) -> str:
    d = r.drift
    window = f"{_when(r.start)} to {_when(r.end)} UTC"
    error_rate = d.errors / d.requests if d.requests else None
    tiles = [("Requests", _int(d.requests), f"{_int(d.errors)} failed"),
             ("Rows", _int(r.rows), f"{_int(d.rows)} profiled" if d.reference else
              "not profiled"),
             ("Error rate", _pct(error_rate), "of requests"),
             ("Latency p99", _ms(r.latency_p99_s), f"mean {_ms(r.latency_mean_s)}")]
    if d.reference is None:
        tiles.append(("Data drift", "no reference", "attach one to compare"))
    elif d.dataset_drift is None or not d.rows:
        tiles.append(("Data drift", "no data", "no profiled rows"))
    else:
        drifted = sum(f.drifted for f in d.features)
        tiles.append(("Data drift", "DRIFT" if d.dataset_drift else "none",
                      f"{drifted} of {len(d.features)} features drifted"))
    if r.quality_metric is not None:
        value = r.performance.metrics.get(r.quality_metric)
        tiles.append((_metric_name(r.quality_metric), _num(value),
                      f"{_int(r.performance.labelled)} labelled rows"))
    else:
        tiles.append(("Live quality", "no feedback", "no labelled rows"))
    tile_html = "".join(
        f'<div class="tile{_tile_class(label, value)}"><div class="k">{_e(label)}</div>'
        f'<div class="v">{_e(value)}</div><div class="s">{_e(sub)}</div></div>'
        for label, value, sub in tiles)
    return (f'<header><h1>{_e(r.model)} <span class="ver">{_e(r.version)}</span></h1>'
            f'<p class="sub">Monitoring report, last {_e(r.window)}: {_e(window)}</p>'
            f'<p class="line">{_e(_summary_line(r))}</p>'
            f'<div class="tiles">{tile_html}</div></header>')


def _summary_line(r: Report) -> str:
    """One sentence, like ``modelhost monitor drift``'s first line."""
    d = r.drift
    head = (f"{r.model} {r.version}, last {r.window}: {_count(d.requests, 'request')}, "
            f"{_count(r.rows, 'row')}")
    if d.reference is None:
        return f"{head}; no reference profile, so no drift."
    if not d.rows:
        return f"{head}, none profiled against the reference: no drift to measure."
    drifted = sum(f.drifted for f in d.features)
    verdict = "DATA DRIFT" if d.dataset_drift else "no data drift"
    return (f"{head} ({_int(d.rows)} profiled against {_int(d.reference.rows)} reference "
            f"rows): {verdict}, {drifted} of {len(d.features)} features drifted.")


def _tile_class(label: str, value: str) -> str:
    if label == "Data drift":
        return " bad" if value == "DRIFT" else (" good" if value == "none" else " muted")
    return " muted" if value == "no feedback" else ""


def _traffic(r: Report) -> str:
    charts = [
        _card("Requests", "Requests per bucket; the failed ones in red.",
              _time_bars(r, "requests", "requests",
                         [("answered", _LIVE, [b.requests - b.errors for b in r.buckets]),
                          ("failed", _ERROR, [b.errors for b in r.buckets])])),
        _card("Error rate", "Failed requests / requests.",
              _time_lines(r, "errors", "error rate",
                          [("error rate", _ERROR, [b.error_rate for b in r.buckets])],
                          fmt=_pct, floor_max=0.04)),
        _card("Latency", "Mean and p99 (approximate), milliseconds.",
              _time_lines(r, "latency", "latency",
                          [("mean", _LIVE, [_to_ms(b.latency_mean_s) for b in r.buckets]),
                           ("p99", _P99, [_to_ms(b.latency_p99_s) for b in r.buckets])],
                          fmt=_ms_number, floor_max=1.0)),
    ]
    return (f'<section id="traffic"><h2>Traffic</h2><p class="note">{len(r.buckets)} buckets of '
            f'{_duration_text(dt.timedelta(seconds=r.bucket_s))}; hover a chart for its '
            f'numbers.</p><div class="grid three">{"".join(charts)}</div></section>')


def _drift(r: Report) -> str:
    d = r.drift
    if d.reference is None:
        command = f"modelhost monitor reference {r.model} {r.version} --data FILE"
        return (f'<section id="drift"><h2>Drift</h2><p class="callout"><strong>No reference '
                f"profile.</strong> Version {_e(r.version)} has no reference profile (a "
                "profile of its training data), so there is nothing to compare its live "
                f"inputs with: attach one with <code>{_e(command)}</code>. Traffic and "
                "quality are shown all the same.</p></section>")
    ref = d.reference
    intro = (f"Live inputs against the reference profile ({_int(ref.rows)} rows, "
             f"from {ref.source}, attached {_when(ref.created_at)} UTC). A column drifts "
             "when its test's p-value is below its threshold, or its distance at or above "
             "it; the data set drifts when at least half of the features do.")
    rows = []
    for f in (*d.features, *((d.prediction,) if d.prediction else ())):
        cls = ' class="drifted"' if f.drifted else ""
        rows.append(
            f"<tr{cls}><td>{_e(f.name)}</td><td>{_e(f.type)}</td><td>{_e(f.test)}</td>"
            f'<td class="n">{_num(f.statistic)}</td><td class="n">{_num(f.p_value)}</td>'
            f'<td class="n">{_num(f.threshold)}</td>'
            f"<td>{'yes' if f.drifted else ('no' if f.rows else '-')}</td>"
            f'<td class="n">{_num(f.psi)}</td><td class="n">{_int(f.rows)}</td>'
            f'<td class="n">{_int(f.nulls)}</td><td class="n">{_int(f.out_of_range)}</td>'
            "</tr>")
    table = ('<table class="data"><thead><tr><th>Column</th><th>Type</th><th>Test</th>'
             '<th class="n">Statistic</th><th class="n">p-value</th>'
             '<th class="n">Threshold</th><th>Drift</th><th class="n">PSI</th>'
             '<th class="n">Live rows</th><th class="n">Nulls</th>'
             f'<th class="n">Outside</th></tr></thead><tbody>{"".join(rows)}</tbody>'
             "</table>")
    shown = _most_drifted(d.features)
    more = (f" The {len(shown)} features that drifted most of {len(d.features)} are drawn."
            if len(shown) < len(d.features) else "")
    charts = [
        _card("Drift over time", "Each cell: a column in a bucket, coloured by its drift "
              "score (1 = the test's threshold; red: drifted; blank: no data)." + more,
              _heatmap(r, shown), wide=True),
        _card("Drifting share", "Share of the features that drift in each bucket; the "
              "data set drifts at 50% (dashed).",
              _time_lines(r, "drift-share", "drift share",
                          [("drifted features", _DRIFT,
                            [b.drift_share for b in r.buckets])],
                          fmt=_pct, fixed_max=1.0, threshold=0.5, size=_WIDE),
              wide=True),
    ]
    return (f'<section id="drift"><h2>Drift</h2><p class="note">{_e(intro)}</p>{table}'
            f'<div class="grid">{"".join(charts)}</div></section>')


def _distributions(r: Report) -> str:
    if not r.features:
        return ""
    by_name = {f.name: f for f in r.features}
    shown = [by_name[c.name] for c in _most_drifted(r.drift.features)]
    cards = [_distribution_card(f) for f in shown]
    if r.prediction is not None:
        cards.append(_distribution_card(r.prediction, prediction=True))
    more = (f" The {len(shown)} features that drifted most of {len(r.features)} are "
            "drawn; the drift table lists all." if len(shown) < len(r.features) else "")
    legend = ('<span class="key ref"></span>reference '
              '<span class="key live"></span>live')
    return (f'<section id="distributions"><h2>Distributions</h2><p class="note">{legend}. '
            "Numeric columns as histograms on the reference's bins (a bar's area is its "
            "share of rows; live values outside the reference's range are counted in the "
            "top corners), categorical ones as a bar per category; nulls are left out."
            f"{more}</p>"
            f'<div class="grid small">{"".join(cards)}</div></section>')


def _distribution_card(f: Distribution, *, prediction: bool = False) -> str:
    d = f.drift
    if not f.live_rows:
        badge = '<span class="badge muted">no live data</span>'
    elif d.drifted:
        badge = '<span class="badge bad">drifted</span>'
    else:
        badge = '<span class="badge good">no drift</span>'
    stats = f"{d.test} {_num(d.statistic)}"
    if d.p_value is not None:
        stats += f", p {_num(d.p_value)}"
    stats += f", PSI {_num(d.psi)}, {_int(f.live_rows)} live rows"
    name = f"{_e(f.name)} <em>(the model's output)</em>" if prediction else _e(f.name)
    chart = _numeric_chart(f) if f.kind == "numeric" and len(f.edges) >= 2 and \
        f.edges[-1] > f.edges[0] else _category_chart(f)
    return (f'<div class="card"><h3>{name} {badge}</h3><p class="s">{_e(stats)}</p>'
            f"{chart}</div>")


def _quality(r: Report) -> str:
    p = r.performance
    if r.quality_metric is None:
        return ('<section id="quality"><h2>Live quality</h2><p class="callout muted">No '
                f"feedback in this window ({_count(p.requests, 'logged request')}): send "
                "labels with POST /v1/feedback to see live accuracy.</p></section>")
    metric = r.quality_metric
    registered = p.at_registration.get(metric)
    label = _metric_name(metric)
    chart = _card(f"Live {label.lower()}", f"{label} of the labelled rows per bucket"
                  + (", against registration (dashed)." if registered is not None else "."),
                  _time_lines(r, "quality", label.lower(),
                              [(label.lower(), _QUALITY, [b.quality for b in r.buckets])],
                              fmt=_num, fixed_max=1.0 if metric == "accuracy" else None,
                              threshold=registered, size=(560, 200, 48),
                              extra=[f"{_int(b.labelled)} labelled rows"
                                     for b in r.buckets]))
    rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="n">{_num(value)}</td>'
        f'<td class="n">{_num(p.at_registration.get(name))}</td>'
        f'<td class="n">{_signed(p.change.get(name))}</td></tr>'
        for name, value in p.metrics.items())
    table = ('<table class="data narrow"><thead><tr><th>Metric</th><th class="n">Live</th>'
             '<th class="n">At registration</th><th class="n">Change</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    note = (f"{_int(p.labelled)} labelled rows from {_count(p.requests, 'logged request')} "
            f"({p.task}).")
    return (f'<section id="quality"><h2>Live quality</h2><p class="note">{_e(note)}</p>'
            f'<div class="grid">{chart}<div class="card">{table}</div></div></section>')


def _numbers(r: Report) -> str:
    metric = _metric_name(r.quality_metric) if r.quality_metric else None
    head = ("<th>Bucket (UTC)</th><th class='n'>Requests</th><th class='n'>Errors</th>"
            "<th class='n'>Rows</th><th class='n'>Mean ms</th><th class='n'>p99 ms</th>"
            "<th class='n'>Drift share</th><th class='n'>Labelled</th>"
            + (f"<th class='n'>{_e(metric)}</th>" if metric else ""))
    rows = "".join(
        f"<tr><td>{_e(_span(b.start, b.end))}</td><td class='n'>{_int(b.requests)}</td>"
        f"<td class='n'>{_int(b.errors)}</td><td class='n'>{_int(b.rows)}</td>"
        f"<td class='n'>{_ms_number(_to_ms(b.latency_mean_s))}</td>"
        f"<td class='n'>{_ms_number(_to_ms(b.latency_p99_s))}</td>"
        f"<td class='n'>{_pct(b.drift_share)}</td><td class='n'>{_int(b.labelled)}</td>"
        + (f"<td class='n'>{_num(b.quality)}</td>" if metric else "") + "</tr>"
        for b in r.buckets)
    return (f'<section id="numbers"><details>'
            f"<summary>Numbers by bucket ({len(r.buckets)})</summary>"
            f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
            "</table></details></section>")


def _footer(r: Report) -> str:
    return (f"<footer>Generated {_e(_when(r.generated_at))} UTC by modelhost monitor "
            "report. Counts are sums of the servers' minute and hour profiles; drift "
            "statistics come from the reference's bins; quality from the prediction log "
            "and its feedback.</footer>")


def _most_drifted(columns: Sequence[ColumnDrift]) -> list[ColumnDrift]:
    """All columns in their order, or the ``MAX_FEATURE_CHARTS`` that drifted most."""
    if len(columns) <= MAX_FEATURE_CHARTS:
        return list(columns)

    def severity(c: ColumnDrift) -> float:
        score = drift_score(c)
        return -1.0 if score is None else score

    return sorted(columns, key=severity, reverse=True)[:MAX_FEATURE_CHARTS]


# --- charts -------------------------------------------------------------------------------

class _Plot:
    """An SVG chart: a plot area inside margins, and the elements drawn so far."""

    def __init__(self, kind: str, label: str, *, width: float = 560, height: float = 190,
                 left: float = 52, right: float = 14, top: float = 14,
                 bottom: float = 28) -> None:
        self.kind, self.label = kind, label
        self.width, self.height = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = top, height - bottom  # y1 is the bottom of the plot area
        self.parts: list[str] = []

    def add(self, element: str) -> None:
        self.parts.append(element)

    def svg(self) -> str:
        return (f'<svg class="chart" data-chart="{self.kind}" role="img" '
                f'aria-label="{_e(self.label)}" viewBox="0 0 {self.width:g} {self.height:g}"'
                f' preserveAspectRatio="xMidYMid meet">{"".join(self.parts)}</svg>')


def _card(title: str, note: str, svg: str, *, wide: bool = False) -> str:
    cls = "card wide" if wide else "card"
    return f'<div class="{cls}"><h3>{_e(title)}</h3><p class="s">{_e(note)}</p>{svg}</div>'


def _nice_step(raw: float) -> float:
    if not math.isfinite(raw) or raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if raw <= m * power)


def _y_axis(plot: _Plot, top: float, fmt: Callable[[float | None], str],
            *, integer: bool = False) -> Callable[[float], float]:
    """Grid lines and labels from 0 to ``top`` (or a nicer number above it); returns
    the value -> y mapping."""
    step = _nice_step(top / 4)
    if integer:
        step = max(1.0, math.ceil(step))
    high = step * max(1, math.ceil(top / step - 1e-9))

    def y(value: float) -> float:
        return plot.y1 - (plot.y1 - plot.y0) * min(max(value / high, 0.0), 1.05)

    ticks = round(high / step)
    for i in range(ticks + 1):
        value = i * step
        at = y(value)
        plot.add(f'<line class="grid" x1="{plot.x0:.1f}" x2="{plot.x1:.1f}" y1="{at:.1f}" '
                 f'y2="{at:.1f}"/><text class="yl" x="{plot.x0 - 6:.1f}" y="{at + 3.5:.1f}">'
                 f"{_e(fmt(value))}</text>")
    return y


def _time_axis(plot: _Plot, r: Report) -> Callable[[dt.datetime], float]:
    start, end = r.start.timestamp(), r.end.timestamp()
    span = max(end - start, 1.0)

    def x(t: dt.datetime) -> float:
        return plot.x0 + (plot.x1 - plot.x0) * (t.timestamp() - start) / span

    plot.add(f'<line class="axis" x1="{plot.x0:.1f}" x2="{plot.x1:.1f}" y1="{plot.y1:.1f}" '
             f'y2="{plot.y1:.1f}"/>')
    span_s = end - start
    # Ticks at round times (midnight for days), as many as fit without overlapping.
    step, fmt = _tick_step(span_s, plot.x1 - plot.x0)
    tick = math.ceil(start / step) * step
    while tick <= end:
        at = plot.x0 + (plot.x1 - plot.x0) * (tick - start) / span
        label = dt.datetime.fromtimestamp(tick, dt.timezone.utc).strftime(fmt)
        half = 3.3 * len(label)
        if plot.x0 - 10 <= at - half and at + half <= plot.width - 2:  # not cut off
            plot.add(f'<line class="tick" x1="{at:.1f}" x2="{at:.1f}" y1="{plot.y1:.1f}" '
                     f'y2="{plot.y1 + 4:.1f}"/><text class="xl" x="{at:.1f}" '
                     f'y="{plot.y1 + 16:.1f}">{_e(label)}</text>')
        tick += step
    return x


_TICK_STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                 172800, 604800)


def _tick_step(span_s: float, width: float) -> tuple[int, str]:
    """Seconds between time ticks, and their strftime format."""
    for step in (*_TICK_STEPS_S, *(604800 * n for n in range(2, 10_000))):
        if step >= 86400:
            fmt = "%Y-%m-%d" if span_s > 300 * 86400 else "%b %d"
        else:
            fmt = "%b %d %H:%M" if span_s > 86400 else "%H:%M"
        label = 6.6 * len(dt.datetime(2026, 11, 30, 12).strftime(fmt)) + 18  # and a gap
        if span_s / step <= max(1.0, width / label):
            return step, fmt
    return 604800 * 10_000, "%Y"


def _hover(plot: _Plot, x: Callable[[dt.datetime], float], r: Report,
           lines: Callable[[int], Iterable[str]]) -> None:
    """A transparent column per bucket, whose tooltip lists the bucket's numbers."""
    for i, b in enumerate(r.buckets):
        a, z = x(b.start), x(b.end)
        text = "\n".join([_span(b.start, b.end), *lines(i)])
        plot.add(f'<rect class="hover" x="{a:.1f}" y="{plot.y0:.1f}" '
                 f'width="{max(z - a, 0.5):.1f}" height="{plot.y1 - plot.y0:.1f}">'
                 f"<title>{_e(text)}</title></rect>")


Series = tuple[str, str, Sequence[float | None]]  # name, colour, one value per bucket
_Size = tuple[float, float, float]  # width, height, left margin
_WIDE: _Size = (1140, 170, 150)  # as wide as the drift heatmap, its axis aligned


def _time_bars(r: Report, kind: str, label: str, stacks: Sequence[Series], *,
               size: _Size = (380, 200, 44)) -> str:
    plot = _Plot(kind, label, width=size[0], height=size[1], left=size[2])
    totals = [sum(float(s[2][i] or 0) for s in stacks) for i in range(len(r.buckets))]
    y = _y_axis(plot, max([*totals, 1.0]), _short, integer=True)
    x = _time_axis(plot, r)
    for i, b in enumerate(r.buckets):
        a, z = x(b.start), x(b.end)
        gap = min(1.5, (z - a) * 0.15)
        base = 0.0
        for name, colour, values in stacks:
            value = float(values[i] or 0)
            if value <= 0:
                continue
            top, bottom = y(base + value), y(base)
            plot.add(f'<rect x="{a + gap:.1f}" y="{top:.1f}" width="{z - a - 2 * gap:.1f}" '
                     f'height="{bottom - top:.1f}" fill="{colour}"><title>'
                     f"{_e(_span(b.start, b.end))}\n{_e(name)}: {_int(int(value))}"
                     "</title></rect>")
            base += value
    _hover(plot, x, r, lambda i: [f"{name}: {_int(int(values[i] or 0))}"
                                  for name, _, values in stacks])
    _legend(plot, [(name, colour) for name, colour, _ in stacks])
    return plot.svg()


def _time_lines(r: Report, kind: str, label: str, series: Sequence[Series], *,
                fmt: Callable[[float | None], str], fixed_max: float | None = None,
                floor_max: float = 0.0, threshold: float | None = None,
                extra: Sequence[str] | None = None, size: _Size = (380, 200, 44)) -> str:
    plot = _Plot(kind, label, width=size[0], height=size[1], left=size[2])
    values = [v for _, _, vs in series for v in vs if v is not None and math.isfinite(v)]
    top = fixed_max if fixed_max is not None else max([*values, floor_max,
                                                       threshold or 0.0, 1e-9])
    y = _y_axis(plot, top, fmt)
    x = _time_axis(plot, r)
    if threshold is not None:
        plot.add(f'<line class="threshold" x1="{plot.x0:.1f}" x2="{plot.x1:.1f}" '
                 f'y1="{y(threshold):.1f}" y2="{y(threshold):.1f}"/>')
    middles = [b.start + (b.end - b.start) / 2 for b in r.buckets]
    for name, colour, vs in series:
        run: list[str] = []
        for i, v in enumerate([*vs, None]):
            if v is not None and math.isfinite(v):
                run.append(f"{x(middles[i]):.1f},{y(v):.1f}")
                continue
            if len(run) > 1:
                plot.add(f'<polyline points="{" ".join(run)}" fill="none" '
                         f'stroke="{colour}" stroke-width="1.8"/>')
            run = []
        for i, v in enumerate(vs):
            if v is None or not math.isfinite(v):
                continue
            b = r.buckets[i]
            plot.add(f'<circle cx="{x(middles[i]):.1f}" cy="{y(v):.1f}" r="2.6" '
                     f'fill="{colour}"><title>{_e(_span(b.start, b.end))}\n{_e(name)}: '
                     f"{_e(fmt(v))}</title></circle>")
    if not values:
        plot.add(f'<text class="empty" x="{(plot.x0 + plot.x1) / 2:.1f}" '
                 f'y="{(plot.y0 + plot.y1) / 2:.1f}">no data in this window</text>')

    def lines(i: int) -> list[str]:
        shown = [f"{name}: {fmt(vs[i])}" for name, _, vs in series]
        return shown + ([extra[i]] if extra else [])

    _hover(plot, x, r, lines)
    _legend(plot, [(name, colour) for name, colour, _ in series])
    return plot.svg()


def _legend(plot: _Plot, entries: Sequence[tuple[str, str]]) -> None:
    if len(entries) < 2:
        return
    at = plot.x1
    for name, colour in reversed(entries):
        width = 14 + 6.2 * len(name)
        at -= width
        plot.add(f'<rect x="{at:.1f}" y="2" width="9" height="9" fill="{colour}"/>'
                 f'<text class="lg" x="{at + 12:.1f}" y="10">{_e(name)}</text>')
        at -= 8


def _heatmap(r: Report, shown: Sequence[ColumnDrift]) -> str:
    names = [c.name for c in shown]
    index = {c.name: i for i, c in enumerate(r.drift.features)}
    rows: list[tuple[str, list[ColumnDrift | None]]] = [
        (name, [b.features[index[name]] if b.features else None for b in r.buckets])
        for name in names]
    if r.drift.prediction is not None:
        rows.append(("prediction", [b.prediction for b in r.buckets]))
    cell_h = 16.0
    plot = _Plot("drift", "drift score per column and bucket", width=1140,
                 height=14 + cell_h * len(rows) + 30, left=150, top=14)
    x = _time_axis(plot, r)
    for j, (name, cells) in enumerate(rows):
        top = plot.y0 + j * cell_h
        shown_name = name if len(name) <= 22 else name[:21] + "…"
        label_class = "yl pred" if j == len(names) else "yl"
        plot.add(f'<text class="{label_class}" x="{plot.x0 - 8:.1f}" '
                 f'y="{top + cell_h / 2 + 4:.1f}">{_e(shown_name)}<title>{_e(name)}</title>'
                 "</text>")
        for b, cell in zip(r.buckets, cells, strict=True):
            a, z = x(b.start), x(b.end)
            score = drift_score(cell) if cell is not None else None
            text = f"{_span(b.start, b.end)}\n{name}: " + _cell_text(cell, score)
            plot.add(f'<rect x="{a + 0.5:.1f}" y="{top + 0.5:.1f}" '
                     f'width="{max(z - a - 1, 0.5):.1f}" height="{cell_h - 1:.1f}" '
                     f'fill="{_heat(cell, score)}"><title>{_e(text)}</title></rect>')
    return plot.svg()


def _cell_text(cell: ColumnDrift | None, score: float | None) -> str:
    if cell is None or score is None:
        return "no live values"
    text = f"{cell.test} {_num(cell.statistic)}"
    if cell.p_value is not None:
        text += f", p {_num(cell.p_value)}"
    return (text + f", score {_num(score)}, {_int(cell.rows)} rows, "
            + ("drifted" if cell.drifted else "no drift"))


def _heat(cell: ColumnDrift | None, score: float | None) -> str:
    """Pale to amber below the threshold, red to dark red above it."""
    if cell is None or score is None:
        return "#f8fafc"
    if not cell.drifted:
        return _mix("#e6f4ea", "#fcd34d", min(score, 1.0) ** 2)
    return _mix("#f87171", "#7f1d1d", min(math.log(max(score, 1.0), 10) / math.log(50, 10),
                                         1.0))


def _mix(a: str, b: str, t: float) -> str:
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(p + (q - p) * t):02x}" for p, q in zip(ca, cb, strict=True))


def _numeric_chart(f: Distribution) -> str:
    """A histogram on the value axis (bar area = share of rows), the reference's bins
    merged into at most ``_DISPLAY_BINS`` about equally wide ones, and the shares outside
    the reference's range at either side."""
    plot = _Plot(f"distribution-{f.kind}", f"distribution of {f.name}", width=380,
                 height=180, left=14, right=14, top=20)
    edges = f.edges
    low, high = edges[0], edges[-1]
    bins = _merge_bins(edges, f.reference[1:-1], f.live[1:-1])
    densities = [(ref / (b - a), live / (b - a)) for a, b, ref, live in bins]
    top = max([1e-12, *(max(d) for d in densities)])

    def x(value: float) -> float:
        return plot.x0 + (plot.x1 - plot.x0) * (value - low) / (high - low)

    def y(value: float) -> float:
        return plot.y1 - (plot.y1 - plot.y0) * value / top

    # The reference as grey bars, live as a blue outline over them: both stay visible.
    outline = [f"{plot.x0:.1f},{plot.y1:.1f}"]
    for (a, b, _, _), (ref_d, live_d) in zip(bins, densities, strict=True):
        left, right = x(a), x(b)
        if ref_d > 0:
            plot.add(f'<rect x="{left:.2f}" y="{y(ref_d):.1f}" width="{right - left:.2f}" '
                     f'height="{plot.y1 - y(ref_d):.1f}" fill="{_REFERENCE}" '
                     'fill-opacity="0.55"/>')
        outline += [f"{left:.1f},{y(live_d):.1f}", f"{right:.1f},{y(live_d):.1f}"]
    if any(live_d > 0 for _, live_d in densities):
        outline.append(f"{plot.x1:.1f},{plot.y1:.1f}")
        plot.add(f'<polygon points="{" ".join(outline)}" fill="{_LIVE}" fill-opacity="0.12" '
                 f'stroke="{_LIVE}" stroke-width="1.6" stroke-linejoin="round"/>')
    for a, b, ref, live in bins:
        left, right = x(a), x(b)
        closing = "]" if b == high else ")"
        text = (f"[{_num(a)}, {_num(b)}{closing}\nreference {_pct(ref)}\n"
                f"live {_pct(live)}")
        plot.add(f'<rect class="hover" x="{left:.2f}" y="{plot.y0:.1f}" '
                 f'width="{right - left:.2f}" height="{plot.y1 - plot.y0:.1f}"><title>'
                 f"{_e(text)}</title></rect>")
    plot.add(f'<line class="axis" x1="{plot.x0:.1f}" x2="{plot.x1:.1f}" y1="{plot.y1:.1f}" '
             f'y2="{plot.y1:.1f}"/>')
    step = _nice_step((high - low) / 4)
    tick = math.ceil(low / step) * step
    while tick <= high + 1e-9 * abs(high):
        at = x(tick)
        plot.add(f'<line class="tick" x1="{at:.1f}" x2="{at:.1f}" y1="{plot.y1:.1f}" '
                 f'y2="{plot.y1 + 4:.1f}"/><text class="xl" x="{at:.1f}" '
                 f'y="{plot.y1 + 16:.1f}">{_e(_num(round(tick, 12)))}</text>')
        tick += step
    range_text = f"the reference's range [{_num(low)}, {_num(high)}]"
    for share, label, side, anchor, at in (
            (f.live[0], f"◀ {_pct(f.live[0])} below", "below", "start", plot.x0),
            (f.live[-1], f"{_pct(f.live[-1])} above ▶", "above", "end", plot.x1)):
        if share > 0:
            text = f"{_pct(share)} of the live values are {side} {range_text}"
            plot.add(f'<text class="out" x="{at:.1f}" y="12" text-anchor="{anchor}">'
                     f"{_e(label)}<title>{_e(text)}</title></text>")
    return plot.svg()


_DISPLAY_BINS = 30


def _merge_bins(edges: Sequence[float], reference: Sequence[float],
                live: Sequence[float]) -> list[tuple[float, float, float, float]]:
    """Consecutive bins merged until each is at least 1/``_DISPLAY_BINS`` of the range
    wide (the reference's quantile bins are narrow where values are dense, which would
    draw needles): (left, right, reference share, live share)."""
    least = (edges[-1] - edges[0]) / _DISPLAY_BINS
    merged: list[tuple[float, float, float, float]] = []
    first, ref, now = 0, 0.0, 0.0
    for i in range(len(edges) - 1):
        ref += reference[i]
        now += live[i]
        if edges[i + 1] - edges[first] >= least or i == len(edges) - 2:
            merged.append((edges[first], edges[i + 1], ref, now))
            first, ref, now = i + 1, 0.0, 0.0
    if len(merged) > 1 and merged[-1][1] - merged[-1][0] < least / 2:  # a sliver at the end
        a, _, r1, l1 = merged[-2]
        _, b, r2, l2 = merged.pop()
        merged[-1] = (a, b, r1 + r2, l1 + l2)
    return merged


def _category_chart(f: Distribution) -> str:
    """Grouped bars: reference and live share per category."""
    plot = _Plot(f"distribution-{f.kind}", f"distribution of {f.name}", width=380,
                 height=190, left=44, right=12, top=20, bottom=40)
    slots = [i for i in range(len(f.labels)) if f.reference[i] > 0 or f.live[i] > 0]
    slots.sort(key=lambda i: -max(f.reference[i], f.live[i]))
    rest = slots[MAX_CATEGORIES - 1:] if len(slots) > MAX_CATEGORIES else []
    kept = sorted(slots[:len(slots) - len(rest)], key=_category_order(f.labels))
    bars: list[tuple[str, float, float]] = [(f.labels[i], f.reference[i], f.live[i])
                                            for i in kept]
    if rest:
        bars.append((f"{len(rest)} more", sum(f.reference[i] for i in rest),
                     sum(f.live[i] for i in rest)))
    top = max([1e-12, *(max(a, b) for _, a, b in bars)])
    y = _y_axis(plot, top, _pct)
    plot.add(f'<line class="axis" x1="{plot.x0:.1f}" x2="{plot.x1:.1f}" y1="{plot.y1:.1f}" '
             f'y2="{plot.y1:.1f}"/>')
    slot_w = (plot.x1 - plot.x0) / max(len(bars), 1)
    bar_w = min(slot_w * 0.38, 28)
    for k, (label, ref, live) in enumerate(bars):
        middle = plot.x0 + slot_w * (k + 0.5)
        for value, colour, at in ((ref, _REFERENCE, middle - bar_w),
                                  (live, _LIVE, middle)):
            plot.add(f'<rect x="{at:.1f}" y="{y(value):.1f}" width="{bar_w:.1f}" '
                     f'height="{plot.y1 - y(value):.1f}" fill="{colour}"/>')
        shown = label if len(label) <= 12 else label[:11] + "…"
        text = f"{label}\nreference {_pct(ref)}\nlive {_pct(live)}"
        plot.add(f'<rect class="hover" x="{middle - slot_w / 2:.1f}" y="{plot.y0:.1f}" '
                 f'width="{slot_w:.1f}" height="{plot.y1 - plot.y0:.1f}"><title>'
                 f"{_e(text)}</title></rect>")
        rotate = len(bars) > 5
        anchor = ' text-anchor="end"' if rotate else ""
        transform = (f' transform="rotate(-35 {middle:.1f} {plot.y1 + 12:.1f})"'
                     if rotate else "")
        plot.add(f'<text class="xl"{anchor} x="{middle:.1f}" y="{plot.y1 + 14:.1f}"'
                 f"{transform}>{_e(shown)}</text>")
    return plot.svg()


def _category_order(labels: Sequence[str]) -> Callable[[int], tuple[float, int]]:
    """Sort key of bar slots: by number when every category is one (classes 0, 1, 2),
    else as the reference has them (most frequent first); "(other)" and "(unseen)"
    last."""
    values: dict[int, float] = {}
    for i, label in enumerate(labels[:-2]):
        try:
            values[i] = float(label)
        except ValueError:
            return lambda i: (0.0, i)
    return lambda i: (values.get(i, math.inf), i)


# --- formatting ---------------------------------------------------------------------------

def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _short(value: float | None) -> str:
    """Axis labels: 1.5k, 2M."""
    if value is None:
        return "-"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _int(value: int) -> str:
    return f"{value:,}"


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    if 0 < value < 0.001:
        return "<0.1%"
    return f"{100 * value:.1f}%".replace(".0%", "%")


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds


def _ms_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{_ms_number(_to_ms(seconds))} ms"


def _count(n: int, thing: str) -> str:
    return f"{_int(n)} {thing}" if n == 1 else f"{_int(n)} {thing}s"


def _metric_name(metric: str) -> str:
    return {"accuracy": "Accuracy", "mae": "MAE"}.get(metric, metric)


def _when(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _span(a: dt.datetime, b: dt.datetime) -> str:
    """``2026-11-21 10:00 to 11:00 UTC`` (the end's date only when it differs)."""
    last = b - dt.timedelta(microseconds=1)  # a bucket ending at midnight is that day's
    end = b.strftime("%H:%M") if a.date() == last.date() else _when(b)
    return f"{_when(a)} to {end} UTC"


_CSS = """
:root{--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;
--bad:#b91c1c;--good:#047857}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:26px;margin:0 0 2px}h1 .ver{color:var(--muted);font-weight:500}
h2{font-size:18px;margin:28px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:0 0 2px;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
h3 em{color:var(--muted);font-weight:400}
.sub{color:var(--muted);margin:0 0 6px}.line{margin:4px 0 12px;font-weight:600}
.note{color:var(--muted);margin:2px 0 12px}
.s{color:var(--muted);font-size:12px;margin:0 0 6px}
.tiles{display:grid;grid-template-columns:repeat(6,1fr);gap:10px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.tile .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.tile .v{font-size:22px;font-weight:650;margin:2px 0}.tile .s{margin:0}
.tile.bad{border-color:#fecaca;background:#fef2f2}.tile.bad .v{color:var(--bad)}
.tile.good .v{color:var(--good)}
.tile.muted .v{color:var(--muted);font-size:18px;line-height:30px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}
.grid.small,.grid.three{grid-template-columns:repeat(3,minmax(0,1fr))}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card.wide{grid-column:1/-1}
svg.chart{width:100%;height:auto;display:block}
svg text{font-family:inherit;font-size:11px;fill:#475569}
svg .yl{text-anchor:end}svg .xl{text-anchor:middle}svg .yl.pred{font-style:italic}
svg .lg{font-size:11px}svg .out{fill:var(--bad);font-weight:600}
svg .empty{text-anchor:middle;fill:#94a3b8;font-size:13px}
svg .grid{stroke:#eef2f7}svg .axis{stroke:#94a3b8}svg .tick{stroke:#94a3b8}
svg .threshold{stroke:#334155;stroke-dasharray:5 4;stroke-width:1.2}
svg .hover{fill:transparent;pointer-events:all}svg .hover:hover{fill:rgba(15,23,42,.06)}
table.data{border-collapse:collapse;width:100%;background:var(--card);font-size:13px;
border:1px solid var(--line);margin-bottom:14px}
table.data.narrow{margin:0;border:0}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{background:#f1f5f9;font-weight:600;font-size:12px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td{background:#fef2f2}tr.drifted td:first-child{color:var(--bad);font-weight:600}
.badge{font-size:11px;font-weight:600;border-radius:10px;padding:1px 8px}
.badge.bad{background:#fee2e2;color:var(--bad)}.badge.good{background:#dcfce7;color:var(--good)}
.badge.muted{background:#f1f5f9;color:var(--muted)}
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 8px;vertical-align:-1px}
.key.ref{background:#94a3b8}.key.live{background:#2563eb}
code{font:12.5px ui-monospace,"DejaVu Sans Mono",monospace;background:#f1f5f9;
padding:1px 4px;border-radius:4px}
.callout{background:#fffbeb;border:1px solid #fde68a;border-radius:8px;padding:10px 14px}
.callout.muted{background:var(--card);border-color:var(--line);color:var(--muted)}
details{margin-top:24px}summary{cursor:pointer;font-weight:600}
footer{margin-top:28px;color:var(--muted);font-size:12px}
@media (max-width:900px){.tiles{grid-template-columns:repeat(3,1fr)}
.grid,.grid.small,.grid.three{grid-template-columns:1fr}}
"""


REPORT_CSS = _CSS
"""The report's style sheet (the web console serves it beside its own)."""

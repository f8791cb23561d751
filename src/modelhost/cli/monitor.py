"""``modelhost monitor ...``: live model quality from the prediction log and feedback."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from modelhost._utils import parse_duration, utcnow
from modelhost.cli._app import JSON_OPTION, STATE, app, emit, make_table, out, sub_app

monitor_app = sub_app("Live quality, drift and reports of the versions being served.")
app.add_typer(monitor_app, name="monitor")

VERSION_OPTION = typer.Option("@production", "--version",
                              help="Version, alias, latest or @stage.")


def _window_option(default: str) -> Any:
    return typer.Option(default, "--window", help="How far back: 30m, 12h, 7d, ...")


def _target(name: str, version: str, window: str) -> tuple[Any, Any, dt.datetime,
                                                           dt.datetime]:
    """The client, the version, and the window [start, end) ending now."""
    from modelhost.monitoring.performance import window_ending

    start, end = window_ending(utcnow(), parse_duration(window))
    client = STATE.client()
    return client, client.registry.get_version(name, version), start, end


def drift_service(client: Any) -> Any:
    from modelhost.monitoring.drift import DriftService

    return DriftService(client.profiles, references=client.registry.reference, now=utcnow)


@monitor_app.command("performance")
def monitor_performance(
    name: str,
    version: str = VERSION_OPTION,
    window: str = _window_option("1h"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Metrics of the predictions that got feedback, against those at registration."""
    from modelhost.monitoring.performance import performance

    client, mv, start, end = _target(name, version, window)
    result = performance(client.predictions, model=name, version=mv.version,
                         start=start, end=end, registered=mv.metrics)
    if result.task is None:
        text = (f"{name} {mv.version}: {_count(result.requests, 'request')} logged in the "
                f"last {window}, none with feedback yet.")
        emit(result.to_dict(), as_json=as_json, table=text)
        return

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    if as_json:
        emit(result.to_dict(), as_json=True)
        return
    out.print(f"{name} {mv.version}, last {window}: {_count(result.labelled, 'labelled row')} "
              f"from {_count(result.requests, 'logged request')} ({result.task})")
    out.print(make_table("METRIC", "LIVE", "AT REGISTRATION", "CHANGE", rows=[
        (metric, shown(value), shown(result.at_registration.get(metric)),
         f"{result.change[metric]:+.4f}" if metric in result.change else "-")
        for metric, value in result.metrics.items()]))


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


@monitor_app.command("drift")
def monitor_drift(
    name: str,
    version: str = VERSION_OPTION,
    window: str = _window_option("1h"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Drift of the live inputs and predictions against the version's reference."""
    client, mv, start, end = _target(name, version, window)
    report = drift_service(client).drift(name, mv.version, start=start, end=end).to_dict()
    if as_json:
        emit(report, as_json=True)
        return
    head = (f"{name} {mv.version}, last {window}: {_count(report['requests'], 'request')}, "
            f"{_count(report['rows'], 'row')} profiled")
    if report["reference"] is None:
        out.print(f"{head}.\n{report['message']}")
        return
    drifted = sum(f["drifted"] for f in report["features"])
    verdict = ("DATA DRIFT" if report["dataset_drift"] else "no data drift")
    out.print(f"{head} against {report['reference_rows']} reference rows "
              f"({report['reference']['source']}): {verdict}, {drifted} of "
              f"{len(report['features'])} features drifted")
    rows = [*report["features"]]
    if report["prediction"] is not None:
        rows.append(report["prediction"])
    # Thresholds and types are in --json; a test's name says which rule applies.
    # OUTSIDE: live values out of the reference's range, or categories it never had.
    out.print(make_table("COLUMN", "TEST", "STATISTIC", "P-VALUE", "DRIFT", "PSI",
                         "OUTSIDE", rows=[
        (f["name"], f["test"], _num(f["statistic"]), _num(f["p_value"]),
         "yes" if f["drifted"] else "no", _num(f["psi"]), str(f["out_of_range"]))
        for f in rows]))


@monitor_app.command("reference")
def monitor_reference(
    name: str,
    version: str,
    data: str = typer.Option(..., "--data", help="A CSV/Parquet file or folder, or a "
                             "logged dataset as NAME@VERSION."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Attach a reference profile (the baseline of drift) to a version, from its
    training data; replaces an earlier one."""
    from pathlib import Path

    from modelhost.errors import InvalidInputError
    from modelhost.tracking.datasets import read_frame, read_version

    client = STATE.client()
    if Path(data).exists() or "@" not in data:
        frame, source = read_frame(data), f"file {Path(data).name}"
    else:
        dataset, _, number = data.rpartition("@")
        if not number.isdigit():
            raise InvalidInputError(f"--data {data!r}: a dataset version is NAME@N (N a "
                                    "number), and no file has that name")
        dv = client.datasets.get(dataset, int(number))
        frame, source = read_version(client.datasets, dv), f"dataset {dv.name}@{dv.version}"
    stored = client.registry.attach_reference(name, version, frame, source=source)
    features = len(stored.profile["features"])
    emit({"model": name, "version": stored.version, "rows": stored.rows,
          "features": features, "source": stored.source, "digest": stored.digest},
         as_json=as_json,
         table=f"{name} {stored.version}: reference profile from {stored.source} "
               f"({_count(stored.rows, 'row')}, {_count(features, 'feature')})")


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"


@monitor_app.command("report")
def monitor_report(
    name: str,
    version: str = VERSION_OPTION,
    window: str = _window_option("7d"),
    output: str = typer.Option("report.html", "--output", "-o",
                               help="The HTML file to write (replaced in one step)."),
) -> None:
    """A self-contained HTML report (it opens offline) of a version's traffic, drift and
    live quality over the window, with charts."""
    from modelhost.monitoring.report import build_report
    from modelhost.monitoring.report_html import render_html

    client, mv, start, end = _target(name, version, window)
    report = build_report(drift_service(client), client.predictions, model=name,
                          version=mv.version, start=start, end=end, window=window,
                          registered=mv.metrics)
    data = render_html(report).encode("utf-8")
    _write_replacing(output, data)
    out.print(f"wrote {output} ({max(1, round(len(data) / 1024))} KB): {name} {mv.version}, "
              f"last {window}", markup=False, highlight=False)


def _write_replacing(output: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``output``, then rename it over it:
    a reader sees the old file or the whole new one. The file gets the permissions a
    new file would (the umask's), not the temporary file's 0600."""
    import contextlib
    import os
    import tempfile
    from pathlib import Path

    target = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                               dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        Path(tmp).chmod(0o666 & ~umask)
        Path(tmp).replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise

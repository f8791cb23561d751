"""``modelhost monitor ...``: live model quality from the prediction log and feedback."""

from __future__ import annotations

import typer

from modelhost._utils import parse_duration, utcnow
from modelhost.cli._app import JSON_OPTION, STATE, app, emit, make_table, out, sub_app

monitor_app = sub_app("Live model quality from the prediction log and feedback.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("performance")
def monitor_performance(
    name: str,
    version: str = typer.Option("@production", "--version",
                                help="Version, alias, latest or @stage."),
    window: str = typer.Option("1h", "--window", help="How far back: 30m, 12h, 7d, ..."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Metrics of the predictions that got feedback, against those at registration."""
    from modelhost.monitoring.performance import performance, window_ending

    start, end = window_ending(utcnow(), parse_duration(window))
    client = STATE.client()
    mv = client.registry.get_version(name, version)
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

"""``modelhost deploy``, ``modelhost rollout ...`` and ``modelhost rollback``: start a
rollout, follow and move it, and go back to the previous version (PRODUCT.md §3.7)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, out, sub_app

if TYPE_CHECKING:
    from rich.table import Table

    from modelhost.entities import Deployment, DeploymentEvent
    from modelhost.remote import RemoteRollouts
    from modelhost.rollout.service import RolloutService

rollout_app = sub_app("Follow and move a model's rollout: status, events, promote, abort, "
                      "step, pause, resume.")
app.add_typer(rollout_app, name="rollout")

_LAST_EVENTS = 5
_REASON_OPTION = typer.Option("", "--reason", help="Why, in words: kept with the event "
                              "and the audit entry.")


def _service() -> RolloutService | RemoteRollouts:
    return STATE.manager().rollouts


@app.command("deploy")
def deploy(
    name: str,
    version: str = typer.Argument(..., help="A version, latest, or an alias."),
    strategy: str = typer.Option("canary", "--strategy",
                                 help="blue-green, canary, ab or shadow."),
    steps: str | None = typer.Option(None, "--steps", help="canary: percentages of "
                                     "traffic, one per step (default 5,25,50,100)."),
    step_duration: str | None = typer.Option(None, "--step-duration", help="canary: "
                                             "least time per step: 30s, 5m, ... (5m)."),
    min_requests: int | None = typer.Option(None, "--min-requests", help="canary: "
                                            "fewest requests per step (200)."),
    max_error_rate: float | None = typer.Option(None, "--max-error-rate", help="canary: "
                                                "how far the candidate's error rate may "
                                                "exceed the stable's (0.02)."),
    max_p99_ratio: float | None = typer.Option(None, "--max-p99-ratio", help="canary: "
                                               "highest p99 latency, as a multiple of the "
                                               "stable version's (1.5)."),
    max_metric_drop: float | None = typer.Option(None, "--max-metric-drop", help="canary: "
                                                 "how much worse the candidate's metric "
                                                 "may be, with feedback (0.05)."),
    min_labelled: int | None = typer.Option(None, "--min-labelled", help="canary: fewest "
                                            "labelled rows per version before the metric "
                                            "counts (50)."),
    split: float | None = typer.Option(None, "--split", help="ab: the candidate's share "
                                       "of traffic (0.5)."),
    metric: str | None = typer.Option(None, "--metric", help="ab, canary: accuracy, "
                                      "conversion or absolute_error (accuracy)."),
    alpha: float | None = typer.Option(None, "--alpha", help="ab: significance level "
                                       "(0.05)."),
    min_samples: int | None = typer.Option(None, "--min-samples", help="ab: fewest "
                                           "labelled samples per arm (200)."),
    auto_promote: bool | None = typer.Option(None, "--auto-promote/--no-auto-promote",
                                             help="ab: promote the candidate once it is "
                                             "significantly better (off)."),
    fraction: float | None = typer.Option(None, "--fraction", help="shadow: the share of "
                                          "requests copied to the candidate (0.1)."),
    keep_previous: str | None = typer.Option(None, "--keep-previous", help="How long the "
                                             "replaced version stays loaded for an instant "
                                             "rollback: 30s, 10m, ... (10m)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Start a rollout of a version: blue-green switches all traffic at once; canary, ab
    and shadow start their split. Only the options given are passed: the others keep
    their defaults, and an option the strategy does not have is refused."""
    given: dict[str, Any] = {
        "steps": None if steps is None else _steps(steps),
        "step_duration_s": step_duration, "min_requests": min_requests,
        "max_error_rate": max_error_rate, "max_p99_ratio": max_p99_ratio, "split": split,
        "metric": metric, "alpha": alpha, "min_samples": min_samples,
        "auto_promote": auto_promote, "fraction": fraction,
        "keep_previous_s": keep_previous, "max_metric_drop": max_metric_drop,
        "min_labelled": min_labelled}
    options = {key: value for key, value in given.items() if value is not None}
    _show(_service().deploy(name, version, strategy, options), as_json=as_json)


@app.command("rollback")
def rollback(name: str, reason: str = _REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Back to the previous stable version at once: a rollout under way stops sending its
    candidate traffic; otherwise production returns to the version it had before."""
    _show(_service().rollback(name, reason=reason), as_json=as_json)


@rollout_app.command("status")
def status(name: str, as_json: bool = JSON_OPTION) -> None:
    """The deployment: versions, strategy, state, traffic weights, and the last events."""
    service = _service()
    deployment = service.status(name)
    if as_json:
        emit(deployment.to_dict(), as_json=True)
        return
    _show(deployment, as_json=False)
    events = service.events(name)
    if not events:
        out.print("no events yet", markup=False, highlight=False)
        return
    out.print(f"last events ({min(len(events), _LAST_EVENTS)} of {len(events)}):",
              markup=False, highlight=False)
    for event in events[-_LAST_EVENTS:]:
        out.print(f"  {_event_line(event)}", markup=False, highlight=False)


@rollout_app.command("events")
def events(name: str, as_json: bool = JSON_OPTION) -> None:
    """What happened to the deployment and why, oldest first."""
    found = _service().events(name)
    if as_json:
        emit({"events": [e.to_dict() for e in found]}, as_json=True)
        return
    if not found:
        out.print(f"no deployment events for {name}", markup=False, highlight=False)
    for event in found:
        out.print(_event_line(event), markup=False, highlight=False)


@rollout_app.command("promote")
def promote(name: str, reason: str = _REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Put the candidate into production now (the stable version is archived)."""
    _act(name, "promote", reason, as_json)


@rollout_app.command("abort")
def abort(name: str, reason: str = _REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Stop the rollout: all traffic back to the stable version."""
    _act(name, "abort", reason, as_json)


@rollout_app.command("step")
def step(name: str, reason: str = _REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Move a canary to its next step now (past its last step: promote)."""
    _act(name, "step", reason, as_json)


@rollout_app.command("pause")
def pause(name: str, reason: str = _REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Hold the rollout at its current weights."""
    _act(name, "pause", reason, as_json)


@rollout_app.command("resume")
def resume(name: str, reason: str = _REASON_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Let a paused rollout go on."""
    _act(name, "resume", reason, as_json)


def _act(name: str, action: str, reason: str, as_json: bool) -> None:
    _show(_service().act(name, action, reason=reason), as_json=as_json)


def _steps(text: str) -> list[float]:
    from modelhost.errors import InvalidInputError

    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"option 'steps' must be percentages separated by commas, "
                                f"e.g. 5,25,50,100; got {text!r}") from None


def _show(deployment: Deployment, *, as_json: bool) -> None:
    """The deployment as JSON, or its headline and table."""
    if as_json:
        emit(deployment.to_dict(), as_json=True)
        return
    out.print(_headline(deployment), markup=False, highlight=False)
    out.print(_table(deployment))


def _headline(d: Deployment) -> str:
    if d.state.running and d.candidate is not None and d.strategy is not None:
        return (f"{d.model}: {d.strategy.words} of {d.candidate} "
                f"{d.state.value}")
    serving = f"{d.stable} in production" if d.stable else "no production version"
    return f"{d.model}: {d.state.value.replace('_', ' ')}, {serving}"


def _table(d: Deployment) -> Table:
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 1, 0, 2))
    table.add_column(style="bold")
    table.add_column()
    step = "-"
    if d.steps:
        step = f"{d.step + 1} of {len(d.steps)} ({_percent(d.steps[d.step] / 100.0)})"
    shadow = d.shadow
    rows = (
        ("stable", d.stable or "-"), ("candidate", d.candidate or "-"),
        ("strategy", d.strategy.value if d.strategy else "-"), ("state", d.state.value),
        ("weights", ", ".join(f"{v} {_percent(w)}" for v, w in d.weights.items()) or "-"),
        ("step", step),
        ("shadow", f"{shadow['version']} ({_percent(shadow['fraction'])} of requests "
                   "copied)" if shadow else "-"),
        ("started", _time(d.started_at) if d.started_at else "-"),
    )
    for label, value in rows:
        table.add_row(label, value)
    return table


def _percent(share: float) -> str:
    return f"{round(share * 100.0, 2):g}%"


def _time(at: Any) -> str:
    return str(at.strftime("%Y-%m-%d %H:%M:%S UTC"))


def _event_line(e: DeploymentEvent) -> str:
    versions = f"{e.from_version or '-'} -> {e.to_version or '-'}"
    numbers = ", ".join(f"{k}={v}" for k, v in e.numbers.items())
    extra = f" [{numbers}]" if numbers else ""
    return f"{_time(e.at)}  {e.kind}  {versions}  {e.reason}{extra} (by {e.actor or '-'})"

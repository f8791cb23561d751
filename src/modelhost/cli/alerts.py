"""``modelhost alerts ...``: alert rules on live metrics, their events, and a check now."""

from __future__ import annotations

from typing import Any

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, out, sub_app

alerts_app = sub_app("Alert rules on live quality, drift and traffic, and their events.")
app.add_typer(alerts_app, name="alerts")


def _service() -> Any:
    from modelhost.monitoring.alerts import AlertService, resolver

    client = STATE.client()
    return AlertService(client.alert_store, resolve=resolver(client.registry),
                        pipelines_dir=client.settings.pipelines_dir)


@alerts_app.command("add")
def alerts_add(
    model: str,
    metric: str = typer.Option(..., "--metric", help="accuracy, f1, mae, ... (NAME_change: "
                               "live minus registered), drift_share, dataset_drift, "
                               "error_rate, requests, latency_mean_ms, latency_p99_ms."),
    op: str = typer.Option(..., "--op", help="<, <=, > or >=."),
    threshold: float = typer.Option(..., "--threshold"),
    window: str = typer.Option("1h", "--window", help="What the metric covers: 30m, 1h, "
                               "7d, ..."),
    min_samples: int = typer.Option(100, "--min-samples", help="Fewest labelled rows, "
                                    "profiled rows or requests to decide on."),
    cooldown: str = typer.Option("1h", "--cooldown", help="Least time between firings."),
    action: str = typer.Option("log", "--action", help="log, webhook, rollback or "
                               "pipeline."),
    url: str | None = typer.Option(None, "--url", help="The webhook's address."),
    spec: str | None = typer.Option(None, "--spec", help="The pipeline file, in "
                                    "MODELHOST_PIPELINES_DIR."),
    version: str | None = typer.Option(None, "--version", help="A version; default: the "
                                       "production one at each evaluation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add an alert rule."""
    from modelhost._actor import current_actor
    from modelhost.monitoring.alerts import rule_dict

    spec_fields = {"model": model, "metric": metric, "op": op, "threshold": threshold,
                   "window": window, "min_samples": min_samples, "cooldown": cooldown,
                   "action": action, "url": url, "spec": spec, "version": version}
    rule = _service().add({k: v for k, v in spec_fields.items() if v is not None},
                          actor=current_actor().name)
    emit(rule_dict(rule), as_json=as_json,
         table=f"added alert {rule.id}: {_rule_text(rule)}")


@alerts_app.command("list")
def alerts_list(
    model: str | None = typer.Option(None, "--model", help="Only this model's rules."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The alert rules."""
    from modelhost.monitoring.alerts import rule_dict

    rules = _service().rules(model)
    if as_json:
        emit({"alerts": [rule_dict(r) for r in rules]}, as_json=True)
        return
    if not rules:
        out.print("no alert rules")
        return
    for r in rules:  # one line each: a rule reads as a sentence
        fired = r.last_fired_at.isoformat(timespec="seconds") if r.last_fired_at else "never"
        out.print(f"{r.id}  {_rule_text(r)} -> {r.action} (last fired: {fired})")


@alerts_app.command("remove")
def alerts_remove(rule_id: str) -> None:
    """Remove an alert rule (its events stay)."""
    _service().remove(rule_id)
    out.print(f"removed alert {rule_id}")


@alerts_app.command("events")
def alerts_events(
    model: str | None = typer.Option(None, "--model"),
    rule_id: str | None = typer.Option(None, "--rule", help="Only this rule's events."),
    limit: int = typer.Option(20, "--limit", help="How many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """What fired, with its numbers, and what the action did."""
    from modelhost.monitoring.alerts import event_dict

    events = _service().events(model=model, rule_id=rule_id, limit=limit)
    if as_json:
        emit({"events": [event_dict(e) for e in events]}, as_json=True)
        return
    if not events:
        out.print("no alert events")
        return
    for e in events:
        out.print(f"{e.at.isoformat(timespec='seconds')}  {e.rule_id}  {e.model} {e.version}: "
                  f"{e.metric} {e.value:.4g} {e.op} {e.threshold:g} ({e.samples} samples) "
                  f"-> {e.action} {e.status}: {e.outcome}")


@alerts_app.command("check")
def alerts_check(as_json: bool = JSON_OPTION) -> None:
    """Evaluate every rule now and run the actions of those that fire (what a server
    does every MODELHOST_ALERTS_INTERVAL_S), waiting for them."""
    import asyncio

    from modelhost._actor import acting_as
    from modelhost.cli.monitor import drift_service
    from modelhost.monitoring.alerts import describe, evaluator_for
    from modelhost.serving.alerting import ACTOR, ActionRunner

    client = STATE.client()
    registry = client.registry
    service = _service()
    evaluator = evaluator_for(registry, client.alert_store, predictions=client.predictions,
                              drift=drift_service(client))
    with acting_as(ACTOR):
        fired = evaluator.evaluate()
    runner = ActionRunner(client.alert_store, client.rollouts, service)

    async def run_all() -> list[tuple[str, str]]:
        return list(await asyncio.gather(*(runner.run(r, e) for r, e in fired)))

    outcomes = asyncio.run(run_all()) if fired else []
    results = [{"rule_id": r.id, "alert": describe(r, e), "status": status,
                "outcome": outcome} for (r, e), (status, outcome) in zip(fired, outcomes,
                                                                        strict=True)]
    if as_json:
        emit({"fired": results}, as_json=True)
        return
    if not results:
        out.print("no alert fired")
    for result in results:
        out.print(f"{result['alert']}: {result['status']}, {result['outcome']}")


def _rule_text(rule: Any) -> str:
    from modelhost.monitoring.alerts import duration_text as _duration

    target = f"{rule.model} {rule.version}" if rule.version else f"{rule.model} (production)"
    return (f"{rule.metric} {rule.op} {rule.threshold:g} over {_duration(rule.window_s)}, "
            f"{target}, at least {rule.min_samples} samples, cooldown "
            f"{_duration(rule.cooldown_s)}")

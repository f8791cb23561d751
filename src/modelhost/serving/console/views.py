"""What each console page shows, gathered from the services the API uses (never SQL of
its own) and shaped for its template: plain dicts and tuples, no HTML. Blocking: the
pages call these in a worker thread."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelhost._utils import utcnow
from modelhost.entities import Deployment, Model, ModelVersion, Run
from modelhost.registry import Registry
from modelhost.stats.profile import ERRORS, REQUESTS
from modelhost.store.profiles import MINUTE_S, ProfileStore

TRAFFIC_WINDOW = dt.timedelta(minutes=5)
"""The window of the request and error rates the model list shows: the last five minute
windows (this one so far), 4 to 5 minutes of traffic, the rate over their actual span."""


@dataclass(frozen=True)
class ModelRow:
    """One line of the model list."""

    name: str
    description: str
    production: str | None
    latest: str | None
    traffic: tuple[tuple[str, float], ...]  # (version, share), largest first
    state: str  # the deployment's state: idle, progressing, paused...
    requests_per_s: float | None  # None: no live profiles on this server
    error_rate: float | None
    updated_at: dt.datetime


def model_rows(registry: Registry, profiles: ProfileStore | None, *,
               now: dt.datetime | None = None) -> list[ModelRow]:
    """Every model with its production version, traffic split, request and error rate
    over the last :data:`TRAFFIC_WINDOW` and last change: one read of the models, one of
    the routing state and one of the windows' headers, whatever the number of models."""
    now = now or utcnow()
    models = registry.list_models()
    routed = {m.name: m.deployment for m in registry.routing_state().models}
    # Whole minute windows: the four before this minute and this one so far.
    start = now.replace(second=0, microsecond=0) - (TRAFFIC_WINDOW - dt.timedelta(minutes=1))
    seconds = max((now - start).total_seconds(), 1.0)
    counts = _traffic(profiles, start, now) if profiles is not None else None
    rows = []
    for m in models:
        deployment = routed.get(m.name)
        traffic = traffic_split(deployment, m)
        requests = errors = 0.0
        if counts is not None:
            requests, errors = counts.get(m.name, (0.0, 0.0))
        rows.append(ModelRow(
            name=m.name, description=m.description, production=m.production_version,
            latest=m.latest_version, traffic=traffic,
            state=deployment.state.value if deployment is not None else "idle",
            requests_per_s=requests / seconds if counts is not None else None,
            error_rate=errors / requests if counts is not None and requests else None,
            updated_at=m.updated_at))
    return rows


def traffic_split(deployment: Deployment | None,
                  model: Model | None = None) -> tuple[tuple[str, float], ...]:
    """(version, share of live traffic), largest share first; the production version
    alone when no rollout is under way."""
    if deployment is not None and deployment.weights:
        return tuple(sorted(deployment.weights.items(), key=lambda kv: (-kv[1], kv[0])))
    if model is not None and model.production_version is not None:
        return ((model.production_version, 1.0),)
    return ()


def _traffic(profiles: ProfileStore, start: dt.datetime,
             end: dt.datetime) -> dict[str, tuple[float, float]]:
    """Model -> (requests, errors) of the minute windows starting in [start, end),
    summed over versions and workers."""
    size = 8 * (max(REQUESTS, ERRORS) + 1)
    totals: dict[str, tuple[float, float]] = {}
    for model, _version, head in profiles.headers(
            width_s=MINUTE_S, start=start, end=end, size=size):
        if len(head) < size:
            continue
        values = np.frombuffer(head, dtype=np.float64)
        requests, errors = totals.get(model, (0.0, 0.0))
        totals[model] = (requests + float(values[REQUESTS]), errors + float(values[ERRORS]))
    return totals


# --- one model --------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One line of a comparison: a name and its value on each side."""

    name: str
    a: str
    b: str

    @property
    def changed(self) -> bool:
        return self.a != self.b


@dataclass(frozen=True)
class Comparison:
    a: ModelVersion
    b: ModelVersion
    inputs: tuple[Difference, ...]
    outputs: tuple[Difference, ...]
    metrics: tuple[tuple[str, float | None, float | None, float | None], ...] = field(
        default=())  # (metric, a, b, b - a)


def compare_versions(a: ModelVersion, b: ModelVersion) -> Comparison:
    """The signature (column by column) and metric differences of two versions."""
    sa, sb = _signature(a), _signature(b)
    metrics = []
    for key in sorted(set(a.metrics) | set(b.metrics)):
        va, vb = a.metrics.get(key), b.metrics.get(key)
        metrics.append((key, va, vb, vb - va if va is not None and vb is not None else None))
    return Comparison(a, b, _columns(sa.get("inputs"), sb.get("inputs")),
                      _columns(sa.get("outputs"), sb.get("outputs")), tuple(metrics))


def _columns(a: Any, b: Any) -> tuple[Difference, ...]:
    left, right = _by_name(a), _by_name(b)
    names = list(left) + [n for n in right if n not in left]
    return tuple(Difference(n, left.get(n, "—"), right.get(n, "—")) for n in names)


def _by_name(spec: Any) -> dict[str, str]:
    """Column name -> its type (and whether it may be missing), from a signature side."""
    columns = spec if isinstance(spec, list) else []
    described = {}
    for i, column in enumerate(columns):
        if not isinstance(column, Mapping):
            continue
        name = str(column["name"]) if column.get("name") is not None else f"#{i}"
        text = str(column.get("type") or column.get("dtype") or "?")
        if column.get("shape"):
            text += f" {list(column['shape'])}"
        if column.get("required") is False:
            text += " (optional)"
        if column.get("nullable"):
            text += " (nullable)"
        described[name] = text
    return described


def signature_columns(mv: ModelVersion) -> tuple[tuple[str, str], ...]:
    """(input column, its type) of a version, in order."""
    return tuple(_by_name(_signature(mv).get("inputs")).items())


def _signature(mv: ModelVersion) -> dict[str, Any]:
    return mv.signature.to_dict() if mv.signature is not None else {}


# --- runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunComparison:
    runs: tuple[Run, ...]
    params: tuple[tuple[str, tuple[str, ...], bool], ...]  # (param, values, differ)
    metrics: tuple[tuple[str, tuple[float | None, ...]], ...]
    histories: Mapping[str, Sequence[tuple[str, Sequence[tuple[int, float]]]]]


def compare_runs(runs: Sequence[Run],
                 history: Any) -> RunComparison:
    """Params side by side (those that differ flagged), the latest metrics, and each
    metric's history over steps per run (``history(run_id, key)`` gives the points)."""
    param_names = sorted({k for r in runs for k in r.params})
    params = tuple((k, tuple(r.params.get(k, "—") for r in runs),
                    len({r.params.get(k) for r in runs}) > 1) for k in param_names)
    metric_names = sorted({k for r in runs for k in r.metrics})
    metrics = tuple((k, tuple(r.metrics.get(k) for r in runs)) for k in metric_names)
    histories: dict[str, list[tuple[str, Sequence[tuple[int, float]]]]] = {}
    for key in metric_names:
        histories[key] = [(r.run_id, [(p.step, p.value) for p in history(r.run_id, key)])
                          for r in runs if key in r.metrics]
    return RunComparison(tuple(runs), params, metrics, histories)

"""Alert rules and their evaluation: when a version's live numbers cross a threshold,
an event is stored and an action is due.

A rule names a model (and a version, or whichever is in production), a ``metric``, a
comparison ``op`` and a ``threshold``, the ``window`` the metric is computed over, the
``min_samples`` it needs (labelled rows for quality metrics, profiled rows for drift,
requests for traffic), a ``cooldown`` between two firings, and an ``action``: ``log``,
``webhook`` (``url``), ``rollback`` (to the previous production version) or ``pipeline``
(``spec``, a pipeline file in the server's pipelines folder, run with ``--reason``).

This module decides; it performs no action itself (serving runs them: HTTP, the
registry, processes), and it never imports ``rollout``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import operator
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelhost._utils import finite_number, parse_duration, utcnow
from modelhost.errors import InvalidInputError
from modelhost.monitoring.drift import DriftService
from modelhost.monitoring.performance import performance
from modelhost.stats import profile as prof
from modelhost.store.alerts import AlertEvent, AlertRule, AlertStore, Firing, public_options
from modelhost.store.monitoring import PredictionLogStore

log = logging.getLogger(__name__)

QUALITY = ("accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")
DRIFT = ("drift_share", "dataset_drift")
TRAFFIC = ("error_rate", "requests", "latency_mean_ms", "latency_p99_ms")
METRICS = (*QUALITY, *(f"{m}_change" for m in QUALITY), *DRIFT, *TRAFFIC)
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
ACTIONS = ("log", "webhook", "rollback", "pipeline")
_FIELDS = {"model", "version", "metric", "op", "threshold", "window", "min_samples",
           "cooldown", "action", "url", "spec"}


@dataclass(frozen=True)
class Measurement:
    value: float | None  # None: nothing to measure in the window
    samples: int


class MetricSource(Protocol):
    def measure(self, model: str, version: str, metric: str, *, start: dt.datetime,
                end: dt.datetime) -> Measurement: ...


class AlertService:
    """Rules checked and stored; the ``deployer`` role manages them."""

    def __init__(self, store: AlertStore, *,
                 resolve: Callable[[str, str | None], str | None],
                 pipelines_dir: Path | None = None) -> None:
        """``resolve(model, ref)`` raises the registry's not-found error for an unknown
        model (ref None) or version, and names the version a ref stands for;
        ``pipelines_dir`` is the folder ``pipeline`` actions may run specs from (none:
        the action is refused)."""
        self._store = store
        self._resolve = resolve
        self._pipelines_dir = pipelines_dir

    def add(self, spec: Mapping[str, Any], *, actor: str) -> AlertRule:
        """Check a rule and store it, audited as ``alert.add``. Every field that is wrong
        is named in one InvalidInputError; an unknown model or version is the registry's
        not-found error (checked once the fields are right)."""
        if not isinstance(spec, Mapping):
            raise InvalidInputError("an alert rule is a JSON object")
        problems: list[str] = []

        def checked(check: Callable[[], Any], default: Any = None) -> Any:
            try:
                return check()
            except InvalidInputError as exc:
                problems.append(str(exc))
                return default

        unknown = sorted(set(spec) - _FIELDS)
        if unknown:
            problems.append(f"unknown field(s): {', '.join(unknown)} (known: "
                            f"{', '.join(sorted(_FIELDS))})")
        model = checked(lambda: _required(spec, "model"))
        metric = checked(lambda: _one_of(spec, "metric", METRICS))
        op = checked(lambda: _one_of(spec, "op", tuple(OPS)))
        threshold = checked(lambda: finite_number("threshold", _present(spec, "threshold")))
        window = checked(lambda: parse_duration(_text(spec, "window") or "1h"))
        cooldown = checked(lambda: parse_duration(_text(spec, "cooldown") or "1h"))
        min_samples = checked(lambda: _min_samples(spec.get("min_samples", 100)))
        action = checked(lambda: _one_of(spec, "action", ACTIONS, default="log"))
        version = checked(lambda: _text(spec, "version"))
        options = checked(lambda: self._options(action, spec), {}) if action else {}
        if problems:
            raise InvalidInputError("the alert rule is not valid: " + "; ".join(problems))
        resolved = self._resolve(model, version)
        return self._store.add(AlertRule(
            id=uuid.uuid4().hex[:16], model=model, version=resolved, metric=metric, op=op,
            threshold=threshold, window_s=int(window.total_seconds()),
            min_samples=min_samples, cooldown_s=int(cooldown.total_seconds()),
            action=action, options=options, created_at=utcnow(), created_by=actor))

    def _options(self, action: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        url, pipeline = _text(spec, "url"), _text(spec, "spec")
        if action != "webhook" and url is not None:
            raise InvalidInputError("'url' is for the webhook action only")
        if action != "pipeline" and pipeline is not None:
            raise InvalidInputError("'spec' is for the pipeline action only")
        if action == "webhook":
            return {"url": _webhook_url(url)}
        if action == "pipeline":
            if pipeline is None:
                raise InvalidInputError("the pipeline action needs 'spec', a pipeline file "
                                        "in the server's pipelines folder")
            self.pipeline_path(pipeline)
            return {"spec": pipeline}
        return {}

    def pipeline_path(self, spec: str) -> Path:
        """The pipeline file ``spec`` names, inside the pipelines folder (checked again
        when the action runs: the folder is the server's)."""
        if self._pipelines_dir is None:
            raise InvalidInputError("pipeline actions need MODELHOST_PIPELINES_DIR: the "
                                    "folder whose pipeline files alerts may run")
        root = self._pipelines_dir.resolve()
        path = (root / spec).resolve()
        if not path.is_relative_to(root):
            raise InvalidInputError(f"pipeline {spec!r} is outside the pipelines folder")
        if not (path.is_file() or (path / "modelhost.yaml").is_file()):
            raise InvalidInputError(f"pipeline {spec!r} is not a pipeline file (or a "
                                    "folder with modelhost.yaml) in the pipelines folder")
        return path

    def rules(self, model: str | None = None) -> list[AlertRule]:
        return self._store.rules(model)

    def remove(self, rule_id: str) -> None:
        self._store.remove(rule_id)

    def events(self, *, model: str | None = None, rule_id: str | None = None,
               limit: int = 100) -> list[AlertEvent]:
        if not 1 <= limit <= 10_000:
            raise InvalidInputError(f"limit must be from 1 to 10,000, got {limit}")
        return self._store.events(model=model, rule_id=rule_id, limit=limit)


def resolver(registry: Any) -> Callable[[str, str | None], str | None]:
    """``AlertService``'s check of a rule's model and version, by a registry (anything
    with ``get_model`` and ``get_version``): the model must exist, and a version (or
    alias) is stored as the version it names now."""
    def resolve(model: str, ref: str | None) -> str | None:
        if ref is None:
            registry.get_model(model)
            return None
        return str(registry.get_version(model, ref).version)

    return resolve


def evaluator_for(registry: Any, store: AlertStore, *,
                  predictions: PredictionLogStore | None,
                  drift: DriftService | None,
                  metrics: MonitorMetrics | None = None) -> Evaluator:
    """The evaluator a server (or ``modelhost alerts check``) runs: metrics from the
    prediction log and the live profiles, the metrics each version was registered with,
    and the production version of each model looked up at every pass."""
    from modelhost.errors import NotFoundError

    def production(model: str) -> str | None:
        try:
            return str(registry.get_version(model, "@production").version)
        except NotFoundError:
            return None

    if metrics is None:
        metrics = metrics_for(registry, predictions=predictions, drift=drift)
    return Evaluator(store, metrics, production=production)


def metrics_for(registry: Any, *, predictions: PredictionLogStore | None,
                drift: DriftService | None) -> MonitorMetrics:
    """The metrics of a registry's versions: from the prediction log and feedback, the
    live profiles, and the metrics each version was registered with."""
    return MonitorMetrics(predictions=predictions, drift=drift,
                          registered=lambda m, v: registry.get_version(m, v).metrics)


class Evaluator:
    """One pass over the rules: measure each, and store a pending event for each that
    fires (the cooldown checked again in the storing transaction)."""

    def __init__(self, store: AlertStore, source: MetricSource, *,
                 production: Callable[[str], str | None],
                 now: Callable[[], dt.datetime] = utcnow) -> None:
        """``production(model)``: the version in production, or None."""
        self._store = store
        self._source = source
        self._production = production
        self._now = now

    def evaluate(self) -> list[tuple[AlertRule, AlertEvent]]:
        now = self._now()
        fired = []
        for rule in self._store.rules():
            last = rule.last_fired_at
            if last is not None and now - last < dt.timedelta(seconds=rule.cooldown_s):
                continue
            version = rule.version or self._production(rule.model)
            if version is None:
                continue
            start = now - dt.timedelta(seconds=rule.window_s)
            try:
                m = self._source.measure(rule.model, version, rule.metric, start=start,
                                         end=now)
            except Exception:  # one rule's failure must not stop the pass
                log.exception("alert %s: measuring %s of %s %s failed", rule.id,
                              rule.metric, rule.model, version)
                continue
            if m.value is None or m.samples < rule.min_samples \
                    or not OPS[rule.op](m.value, rule.threshold):
                continue
            event = self._store.fire(
                Firing(rule.id, rule.model, version, m.value, m.samples), now=now,
                outcome=f"{rule.action} pending")
            if event is not None:
                fired.append((rule, event))
        return fired


@dataclass(frozen=True)
class Health:
    """A version's drift and live quality over one window, all at once (what a server
    exports to Prometheus). None and empty mappings: nothing to measure."""

    model: str
    version: str
    drift_share: float | None = None  # share of features that drifted
    dataset_drift: bool | None = None
    profiled: int = 0  # rows profiled against the reference
    quality: Mapping[str, float] = field(default_factory=dict)  # accuracy, f1, mae, ...
    change: Mapping[str, float] = field(default_factory=dict)  # live minus registered
    labelled: int = 0  # rows with feedback


class MonitorMetrics:
    """The metrics alerts measure: quality from the prediction log and feedback, drift
    and traffic from the live profiles."""

    def __init__(self, *, predictions: PredictionLogStore | None,
                 drift: DriftService | None,
                 registered: Callable[[str, str], Mapping[str, float]]) -> None:
        self._predictions = predictions
        self._drift = drift
        self._registered = registered

    def measure(self, model: str, version: str, metric: str, *, start: dt.datetime,
                end: dt.datetime) -> Measurement:
        if metric in DRIFT:
            if self._drift is None:
                return Measurement(None, 0)
            report = self._drift.drift(model, version, start=start, end=end)
            if report.drift_share is None:
                return Measurement(None, 0)
            value = report.drift_share if metric == "drift_share" \
                else float(bool(report.dataset_drift))
            return Measurement(value, report.rows)
        if metric in TRAFFIC:
            if self._drift is None:
                return Measurement(None, 0)
            header = self._drift.live(model, version, start=start, end=end,
                                      reference=None).header
            return _traffic(metric, header)
        if self._predictions is None:
            return Measurement(None, 0)
        base = metric.removesuffix("_change")
        result = performance(self._predictions, model=model, version=version, start=start,
                             end=end, registered=self._registered(model, version))
        found: float | None = result.change.get(base) if metric.endswith("_change") \
            else result.metrics.get(base)
        return Measurement(float(found) if found is not None else None, result.labelled)


    def health(self, model: str, version: str, *, start: dt.datetime,
               end: dt.datetime) -> Health:
        """Drift and every quality metric of a version over [start, end), one drift
        report and one pass over the labelled rows."""
        drift: dict[str, Any] = {}
        if self._drift is not None:
            report = self._drift.drift(model, version, start=start, end=end)
            if report.drift_share is not None:
                drift = {"drift_share": report.drift_share,
                         "dataset_drift": bool(report.dataset_drift),
                         "profiled": report.rows}
        quality: dict[str, Any] = {}
        if self._predictions is not None:
            result = performance(self._predictions, model=model, version=version,
                                 start=start, end=end,
                                 registered=self._registered(model, version))
            quality = {"quality": {k: float(v) for k, v in result.metrics.items()
                                   if v is not None},
                       "change": dict(result.change), "labelled": result.labelled}
        return Health(model, version, **drift, **quality)


def _traffic(metric: str, header: Any) -> Measurement:
    requests = int(header[prof.REQUESTS])
    if requests == 0:
        return Measurement(None, 0)
    if metric == "requests":
        return Measurement(float(requests), requests)
    if metric == "error_rate":
        return Measurement(float(header[prof.ERRORS]) / requests, requests)
    if metric == "latency_mean_ms":
        return Measurement(float(header[prof.LATENCY_SUM]) / requests * 1000.0, requests)
    p99 = prof.latency_quantile(header[prof.LATENCY_BINS:prof.HEADER], 0.99)
    return Measurement(None if p99 is None else p99 * 1000.0, requests)


def _present(spec: Mapping[str, Any], key: str) -> Any:
    if spec.get(key) is None:
        raise InvalidInputError(f"{key!r} is required")
    return spec[key]


def _one_of(spec: Mapping[str, Any], key: str, choices: tuple[str, ...], *,
            default: str | None = None) -> str:
    value = _text(spec, key) or default
    if value is None:
        raise InvalidInputError(f"{key!r} is required")
    if value not in choices:
        raise InvalidInputError(f"unknown {key} {value!r} (one of: {', '.join(choices)})")
    return value


def _min_samples(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= 1_000_000_000:
        raise InvalidInputError("'min_samples' must be a whole number from 1 to "
                                f"1,000,000,000, got {value!r:.40}")
    return value


def _webhook_url(url: str | None) -> str:
    from urllib.parse import urlsplit

    problem = "the webhook action needs 'url', an http:// or https:// address"
    if url is None:
        raise InvalidInputError(problem)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port out of range
    except ValueError:
        raise InvalidInputError(f"{problem}; {url[:80]!r} does not parse") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(problem)
    return url


def _required(spec: Mapping[str, Any], key: str) -> str:
    value = _text(spec, key)
    if value is None:
        raise InvalidInputError(f"{key!r} is required")
    return value


def rule_dict(rule: AlertRule) -> dict[str, Any]:
    return {"id": rule.id, "model": rule.model, "version": rule.version,
            "metric": rule.metric, "op": rule.op, "threshold": rule.threshold,
            "window_s": rule.window_s, "min_samples": rule.min_samples,
            "cooldown_s": rule.cooldown_s, "action": rule.action,
            **public_options(rule.options), "created_at": rule.created_at.isoformat(),
            "created_by": rule.created_by,
            "last_fired_at": rule.last_fired_at.isoformat() if rule.last_fired_at else None}


def event_dict(event: AlertEvent) -> dict[str, Any]:
    return {"id": event.id, "rule_id": event.rule_id, "model": event.model,
            "version": event.version, "metric": event.metric, "value": event.value,
            "op": event.op, "threshold": event.threshold, "samples": event.samples,
            "action": event.action, "status": event.status, "outcome": event.outcome,
            "at": event.at.isoformat(), "updated_at": event.updated_at.isoformat()}


def _text(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 2000:
        raise InvalidInputError(f"{key!r} must be a non-empty string, got {value!r:.80}")
    return value.strip()


def describe(rule: AlertRule, event: AlertEvent) -> str:
    """One line that says why a rule fired, for logs, webhooks and rollback reasons."""
    value = event.value if math.isfinite(event.value) else float("nan")
    return (f"alert {rule.id}: {event.metric} of {event.model} {event.version} was "
            f"{value:.4g} {event.op} {event.threshold:g} over the last "
            f"{duration_text(rule.window_s)} ({event.samples} samples)")


def duration_text(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

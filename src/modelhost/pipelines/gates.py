"""Quality gates: each kind checks the candidate and says by how much it passed or failed.

Every gate returns a :class:`GateResult` with the observed value, the threshold it was
held to and ``margin``: how far the observed value is on the good side of the threshold
(negative when the gate failed: the amount it missed by). All gates of a run are
evaluated, so the report shows every failure at once; one failure is enough to stop
the pipeline before anything is registered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelhost.errors import InvalidInputError, ModelhostError, NotFoundError
from modelhost.flavors import LoadedModel
from modelhost.pipelines.candidate import Candidate
from modelhost.pipelines.scoring import compute, get_metric
from modelhost.pipelines.spec import (
    DataValidationGate,
    FairnessGate,
    GateSpec,
    LatencyGate,
    ProductionGate,
    ThresholdGate,
)
from modelhost.registry import Registry

LATENCY_BUDGET_S = 20.0  # a latency gate stops measuring after this long


@dataclass(frozen=True)
class GateResult:
    name: str
    kind: str
    passed: bool
    observed: float | None
    threshold: float | None
    margin: float | None  # > 0: slack; < 0: missed by this much
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "passed": self.passed,
                "observed": self.observed, "threshold": self.threshold,
                "margin": self.margin, "message": self.message, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(name=str(data["name"]), kind=str(data["kind"]),
                   passed=bool(data["passed"]), observed=data.get("observed"),
                   threshold=data.get("threshold"), margin=data.get("margin"),
                   message=str(data.get("message", "")), details=data.get("details") or {})


@dataclass
class GateInputs:
    """What gates look at.

    Attributes:
        metrics: the run's metrics (latest value of each), as the steps logged them.
        validation: dataset name -> whether it passed validation (absent: not validated).
        datasets: every dataset of the pipeline.
    """

    metrics: Mapping[str, float]
    registry: Registry
    candidate: Candidate | None = None
    holdout: Any = None
    target: str | None = None
    model_name: str | None = None
    validation: Mapping[str, bool] = field(default_factory=dict)
    datasets: Sequence[str] = ()
    clock: Callable[[], float] = time.perf_counter


def evaluate_gates(gates: Sequence[GateSpec], inputs: GateInputs) -> list[GateResult]:
    """Check every gate; a gate that cannot be checked fails with the reason."""
    results = []
    for gate in gates:
        try:
            results.append(_CHECKS[gate.kind](gate, inputs))
        except ModelhostError as exc:
            results.append(_unchecked(gate, exc.message))
        except Exception as exc:  # noqa: BLE001  # the user's model may raise anything
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            results.append(_unchecked(gate, f"the model raised {type(exc).__name__}: {first}"))
    return results


def _unchecked(gate: GateSpec, reason: str) -> GateResult:
    return GateResult(name=gate.title(), kind=gate.kind, passed=False, observed=None,
                      threshold=None, margin=None, message=f"could not be checked: {reason}")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# --- threshold ------------------------------------------------------------------------


def check_threshold(gate: ThresholdGate, inputs: GateInputs) -> GateResult:
    value = inputs.metrics.get(gate.metric)
    if value is None:
        logged = ", ".join(sorted(inputs.metrics)) or "none"
        return _unchecked(gate, f"metric {gate.metric!r} was not logged by any step "
                                f"(logged: {logged})")
    margins: list[tuple[float, float, str]] = []
    if gate.min is not None:
        margins.append((value - gate.min, gate.min, "below the minimum"))
    if gate.max is not None:
        margins.append((gate.max - value, gate.max, "above the maximum"))
    margin, threshold, side = min(margins, key=lambda m: m[0])
    passed = margin >= 0
    if passed:
        message = f"{gate.metric} = {_fmt(value)} (limit {_fmt(threshold)}, margin " \
                  f"{_fmt(margin)})"
    else:
        message = f"{gate.metric} = {_fmt(value)} is {side} {_fmt(threshold)} by " \
                  f"{_fmt(-margin)}"
    return GateResult(name=gate.title(), kind=gate.kind, passed=passed, observed=value,
                      threshold=threshold, margin=margin, message=message)


# --- not worse than production --------------------------------------------------------


def check_production(gate: ProductionGate, inputs: GateInputs) -> GateResult:
    candidate, holdout, target = _evaluation(inputs)
    name = str(inputs.model_name)
    try:
        production = inputs.registry.get_version(name, "@production")
    except NotFoundError:
        return GateResult(name=gate.title(), kind=gate.kind, passed=True, observed=None,
                          threshold=None, margin=None,
                          message=f"no production version of {name!r} yet; nothing to "
                                  "compare with")
    metric = get_metric(gate.metric)
    y = holdout[target]
    ours = _score(gate.metric, candidate.loaded,
                  holdout[candidate.feature_columns(holdout, target=target)], y)
    loaded = inputs.registry.load(name, production.version).model
    theirs = _score(gate.metric, loaded, holdout[_production_columns(
        production.signature, holdout, target, name, production.version)], y)
    better_by = ours - theirs if metric.higher_is_better else theirs - ours
    margin = gate.tolerance + better_by
    passed = margin >= 0
    threshold = theirs - gate.tolerance if metric.higher_is_better else \
        theirs + gate.tolerance
    versus = f"{gate.metric} {_fmt(ours)} vs production {production.version} {_fmt(theirs)}"
    if better_by >= 0:
        message = f"{versus}: better by {_fmt(better_by)}" if better_by else \
            f"{versus}: equal"
    elif passed:
        message = f"{versus}: worse by {_fmt(-better_by)}, within the tolerance " \
                  f"{_fmt(gate.tolerance)}"
    else:
        message = f"{versus}: worse by {_fmt(-better_by)}, {_fmt(-margin)} more than the " \
                  f"tolerance {_fmt(gate.tolerance)}"
    return GateResult(name=gate.title(), kind=gate.kind, passed=passed, observed=ours,
                      threshold=threshold, margin=margin, message=message,
                      details={"production_version": production.version,
                               "production_value": theirs, "candidate_value": ours,
                               "rows": len(holdout)})


def _production_columns(signature: Any, holdout: Any, target: str, name: str,
                        version: str) -> list[str]:
    columns = [c.name for c in signature.columns] if signature is not None else [
        str(c) for c in holdout.columns if c != target]
    missing = [c for c in columns if c not in holdout.columns]
    if missing:
        raise InvalidInputError(f"production {name} {version} needs column(s) "
                             f"{', '.join(missing)} that the holdout lacks")
    return columns


def _score(metric: str, model: LoadedModel, X: Any, y: Any) -> float:
    predictions, proba = model.predict_with_proba(X)
    return compute(metric, y, predictions=predictions, proba=proba,
                   labels=_labels(model, y, predictions))


def _labels(model: LoadedModel, y: Any, predictions: Any) -> list[Any]:
    import numpy as np

    if model.classes:
        return list(model.classes)
    return sorted(set(np.asarray(y).tolist()) | set(np.asarray(predictions).tolist()))


def _evaluation(inputs: GateInputs) -> tuple[Candidate, Any, str]:
    if inputs.candidate is None or inputs.holdout is None or inputs.target is None:
        raise InvalidInputError("the spec's 'model' section needs 'holdout' and 'target'")
    holdout = inputs.holdout
    if not hasattr(holdout, "columns"):
        raise InvalidInputError(f"model.holdout must be a pandas DataFrame, not "
                             f"{type(holdout).__name__}")
    if inputs.target not in holdout.columns:
        raise InvalidInputError(f"the holdout has no target column {inputs.target!r}")
    return inputs.candidate, holdout, inputs.target


# --- latency --------------------------------------------------------------------------


def check_latency(gate: LatencyGate, inputs: GateInputs) -> GateResult:
    import numpy as np

    candidate = inputs.candidate
    if candidate is None:
        raise InvalidInputError("the spec has no 'model' section")
    X = candidate.served_input()
    if X is None:
        _, holdout, target = _evaluation(inputs)
        X = holdout[candidate.feature_columns(holdout, target=target)].iloc[:5]
    model = candidate.loaded
    model.warm_up(X)
    clock = inputs.clock
    timings: list[float] = []
    started = clock()
    for _ in range(gate.repeats):
        begin = clock()
        model.predict_with_proba(X)
        timings.append((clock() - begin) * 1000.0)
        if clock() - started > LATENCY_BUDGET_S:
            break
    p99 = float(np.percentile(timings, 99))
    p50 = float(np.percentile(timings, 50))
    margin = gate.p99_ms - p99
    passed = margin >= 0
    rows = len(X) if hasattr(X, "__len__") else 1
    measured = f"p99 {p99:.3g} ms (p50 {p50:.3g} ms) over {len(timings)} calls on the " \
               f"{rows}-row input example"
    message = f"{measured}; SLA {gate.p99_ms:g} ms" if passed else \
        f"{measured} exceeds the SLA of {gate.p99_ms:g} ms by {-margin:.3g} ms"
    return GateResult(name=gate.title(), kind=gate.kind, passed=passed, observed=p99,
                      threshold=gate.p99_ms, margin=margin, message=message,
                      details={"p50_ms": p50, "calls": len(timings), "rows": rows,
                               "flavor": candidate.flavor.name})


# --- data validation ------------------------------------------------------------------


def check_data_validation(gate: DataValidationGate, inputs: GateInputs) -> GateResult:
    names = list(gate.datasets or inputs.datasets)
    unvalidated = [n for n in names if n not in inputs.validation]
    failed = [n for n in names if inputs.validation.get(n) is False]
    problems = len(unvalidated) + len(failed)
    if not names:
        message = "the pipeline has no datasets to validate"
    elif problems == 0:
        message = f"{', '.join(names)} passed validation"
    else:
        parts = []
        if failed:
            parts.append(f"failed validation: {', '.join(failed)}")
        if unvalidated:
            parts.append(f"not validated (no 'schema'): {', '.join(unvalidated)}")
        message = "; ".join(parts)
    return GateResult(name=gate.title(), kind=gate.kind, passed=problems == 0 and bool(names),
                      observed=float(problems), threshold=0.0, margin=float(-problems),
                      message=message, details={"datasets": names, "failed": failed,
                                                "unvalidated": unvalidated})


# --- fairness -------------------------------------------------------------------------


def check_fairness(gate: FairnessGate, inputs: GateInputs) -> GateResult:
    import numpy as np

    candidate, holdout, target = _evaluation(inputs)
    if gate.group not in holdout.columns:
        raise InvalidInputError(f"the holdout has no group column {gate.group!r}")
    X = holdout[candidate.feature_columns(holdout, target=target)]
    y = np.asarray(holdout[target])
    groups = holdout[gate.group].astype(str).to_numpy()
    predictions, proba = candidate.loaded.predict_with_proba(X)
    predictions = np.asarray(predictions)
    labels = _labels(candidate.loaded, y, predictions)
    values: dict[str, float] = {}
    skipped: list[str] = []
    for group in sorted(set(groups.tolist())):
        mask = groups == group
        if int(mask.sum()) < gate.min_group_size:
            skipped.append(group)
            continue
        value = compute(gate.metric, y[mask], predictions=predictions[mask],
                        proba=None if proba is None else np.asarray(proba)[mask],
                        labels=labels)
        if math.isfinite(value):
            values[group] = value
    details: dict[str, Any] = {"groups": values, "skipped_small_groups": skipped}
    if len(values) < 2:
        return GateResult(name=gate.title(), kind=gate.kind, passed=True, observed=0.0,
                          threshold=gate.max_gap, margin=gate.max_gap,
                          message=f"fewer than two groups of {gate.group!r} to compare",
                          details=details)
    best = max(values, key=lambda g: values[g])
    worst = min(values, key=lambda g: values[g])
    gap = values[best] - values[worst]
    margin = gate.max_gap - gap
    passed = margin >= 0
    spread = f"{gate.metric} gap across {gate.group!r} is {_fmt(gap)} ({best} " \
             f"{_fmt(values[best])}, {worst} {_fmt(values[worst])})"
    message = f"{spread}; max {_fmt(gate.max_gap)}" if passed else \
        f"{spread}, above the max {_fmt(gate.max_gap)} by {_fmt(-margin)}"
    return GateResult(name=gate.title(), kind=gate.kind, passed=passed, observed=gap,
                      threshold=gate.max_gap, margin=margin, message=message, details=details)


_CHECKS: dict[str, Callable[[Any, GateInputs], GateResult]] = {
    "threshold": check_threshold,
    "not_worse_than_production": check_production,
    "latency": check_latency,
    "data_validation": check_data_validation,
    "fairness": check_fairness,
}

__all__ = ["GateInputs", "GateResult", "check_data_validation", "check_fairness",
           "check_latency", "check_production", "check_threshold", "evaluate_gates"]

"""The analysis of a rollout: what each arm did, and what the controller should do.

Pure: the numbers come in (the live profiles' counts summed over every worker and
replica, the outcomes of labelled predictions), a verdict goes out. A canary is judged by
checks, each of which compares the candidate with the stable version on one thing and
says pass, fail or "not enough data yet"; more checks plug in as functions of the same
shape. An A/B test is judged by the mixture sequential probability ratio test
(:mod:`modelhost.stats.sequential`), which may be looked at on every tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelhost.entities import Deployment
from modelhost.rollout.options import METRICS
from modelhost.stats import profile as prof
from modelhost.stats.sequential import ABResult, Outcomes, ab_decision


@dataclass(frozen=True)
class ArmTraffic:
    """What every worker counted for one version: requests, errors (answers other than
    200) and the latency histogram; plus the labelled outcomes when there is feedback."""

    version: str
    requests: int = 0
    errors: int = 0
    latency: tuple[float, ...] = ()  # counts on prof.LATENCY_EDGES_S
    outcomes: Outcomes = field(default_factory=Outcomes)
    metric: str | None = None

    @classmethod
    def from_vectors(cls, version: str, vectors: Iterable[bytes]) -> ArmTraffic:
        """Sum the header (requests, errors, latency bins) of stored window vectors;
        the rest of a vector depends on the version's reference and is not needed."""
        total = np.zeros(prof.HEADER)
        for counts in vectors:
            total += np.frombuffer(counts, dtype=np.float64, count=prof.HEADER)
        return cls(version, int(total[prof.REQUESTS]), int(total[prof.ERRORS]),
                   tuple(float(x) for x in total[prof.LATENCY_BINS:prof.HEADER]))

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def latency_ms(self, q: float) -> float | None:
        seconds = prof.latency_quantile(self.latency, q) if self.latency else None
        return None if seconds is None else seconds * 1000.0

    def to_dict(self) -> dict[str, Any]:
        """One arm of ``GET /v1/deployments/{name}/analysis``."""
        return {"version": self.version, "requests": self.requests, "errors": self.errors,
                "error_rate": _round(self.error_rate), "p50_ms": _round(self.latency_ms(0.5)),
                "p99_ms": _round(self.latency_ms(0.99)), "labelled": self.outcomes.n,
                "metric": None if self.metric is None else {
                    "name": self.metric,
                    "value": _round(self.outcomes.mean) if self.outcomes.n else None}}


@dataclass(frozen=True)
class CheckResult:
    """One check of a canary step: passed (True), failed (False) or not enough data
    yet (None), with the reason in words and the figures behind it."""

    name: str
    passed: bool | None
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason,
                "numbers": dict(self.numbers)}


Check = Callable[[ArmTraffic, ArmTraffic, Mapping[str, Any]], CheckResult]


def error_rate_check(stable: ArmTraffic, candidate: ArmTraffic,
                     options: Mapping[str, Any]) -> CheckResult:
    """The candidate may fail at most ``max_error_rate`` more often than the stable
    version (requests that are the caller's fault fail on both arms alike)."""
    limit = float(options["max_error_rate"])
    numbers = {"candidate_error_rate": _round(candidate.error_rate),
               "stable_error_rate": _round(stable.error_rate), "max_error_rate": limit,
               "candidate_requests": candidate.requests, "candidate_errors": candidate.errors}
    if candidate.error_rate is None:
        return CheckResult("error_rate", None, "no request has reached the candidate yet",
                           numbers)
    baseline = stable.error_rate or 0.0
    excess = candidate.error_rate - baseline
    if excess > limit:
        return CheckResult("error_rate", False, (
            f"the candidate's error rate is {candidate.error_rate:.1%} "
            f"({candidate.errors} of {candidate.requests} requests) against "
            f"{baseline:.1%} for the stable version: more than {limit:.1%} above it"),
            numbers)
    return CheckResult("error_rate", True, (
        f"error rate {candidate.error_rate:.1%} against {baseline:.1%} (at most "
        f"{limit:.1%} above)"), numbers)


def latency_check(stable: ArmTraffic, candidate: ArmTraffic,
                  options: Mapping[str, Any]) -> CheckResult:
    """The candidate's p99 latency may be at most ``max_p99_ratio`` times the stable's."""
    limit = float(options["max_p99_ratio"])
    c99, s99 = candidate.latency_ms(0.99), stable.latency_ms(0.99)
    numbers = {"candidate_p99_ms": _round(c99), "stable_p99_ms": _round(s99),
               "max_p99_ratio": limit}
    if c99 is None or s99 is None or s99 <= 0:
        return CheckResult("p99_latency", None, "no latency of both versions yet", numbers)
    ratio = c99 / s99
    numbers["p99_ratio"] = _round(ratio)
    if ratio > limit:
        return CheckResult("p99_latency", False, (
            f"the candidate's p99 latency is {c99:.1f} ms, {ratio:.2f} times the stable "
            f"version's {s99:.1f} ms (at most {limit:g} times)"), numbers)
    return CheckResult("p99_latency", True, f"p99 {c99:.1f} ms against {s99:.1f} ms "
                       f"({ratio:.2f} times, at most {limit:g})", numbers)


def quality_check(stable: ArmTraffic, candidate: ArmTraffic,
                  options: Mapping[str, Any]) -> CheckResult:
    """With feedback on both arms (``min_labelled`` rows each), the candidate's metric
    may be at most ``max_metric_drop`` worse than the stable's."""
    metric = str(options["metric"])
    limit = float(options["max_metric_drop"])
    least = int(options["min_labelled"])
    s, c = stable.outcomes, candidate.outcomes
    numbers = {"metric": metric, "candidate": _round(c.mean) if c.n else None,
               "stable": _round(s.mean) if s.n else None, "candidate_labelled": c.n,
               "stable_labelled": s.n, "max_metric_drop": limit}
    if s.n < least or c.n < least:
        return CheckResult("quality", None, (
            f"{metric} needs {least} labelled rows per version (feedback); has "
            f"{c.n} for the candidate, {s.n} for the stable version"), numbers)
    drop = (s.mean - c.mean) if higher_is_better(metric) else (c.mean - s.mean)
    if drop > limit:
        return CheckResult("quality", False, (
            f"the candidate's {metric} is {c.mean:.4g} against {s.mean:.4g} for the stable "
            f"version: worse by {drop:.4g}, more than {limit:g}"), numbers)
    return CheckResult("quality", True, f"{metric} {c.mean:.4g} against {s.mean:.4g}",
                       numbers)


CANARY_CHECKS: tuple[Check, ...] = (error_rate_check, latency_check, quality_check)


@dataclass(frozen=True)
class Verdict:
    """What the controller does with a canary now: ``hold``, ``step`` (or promote, at
    the last step) or ``rollback``; why, and the checks behind it."""

    action: str
    reason: str
    numbers: Mapping[str, Any]
    checks: Sequence[CheckResult]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "numbers": dict(self.numbers),
                "checks": [c.to_dict() for c in self.checks]}


def canary_verdict(d: Deployment, stable: ArmTraffic, candidate: ArmTraffic, *,
                   elapsed_s: float, checks: Sequence[Check] = CANARY_CHECKS) -> Verdict:
    """Roll back as soon as a check fails on at least ``min_requests`` candidate
    requests (an error-rate failure even before, once it cannot pass any more); step
    once the step has lasted ``step_duration_s`` with ``min_requests`` and no check
    failed; hold otherwise."""
    options = d.options
    results = [check(stable, candidate, options) for check in checks]
    enough = candidate.requests >= int(options["min_requests"])
    numbers: dict[str, Any] = {"step": d.step, "weight": d.candidate_weight,
                               "elapsed_s": round(elapsed_s, 1),
                               "candidate_requests": candidate.requests,
                               "stable_requests": stable.requests}
    for result in results:
        numbers.update(result.numbers)
    failed = [r for r in results if r.passed is False]
    if failed and (enough or _hopeless(candidate, options)):
        return Verdict("rollback", "; ".join(r.reason for r in failed), numbers, results)
    duration = float(options["step_duration_s"])
    if not enough:
        return Verdict("hold", f"{candidate.requests} of {int(options['min_requests'])} "
                       "requests at this step", numbers, results)
    if elapsed_s < duration:
        return Verdict("hold", f"{elapsed_s:.0f} s of {duration:.0f} s at this step",
                       numbers, results)
    passed = [r.reason for r in results if r.passed]
    return Verdict("step", "step passed: " + ("; ".join(passed) or "no check failed"),
                   numbers, results)


def _hopeless(candidate: ArmTraffic, options: Mapping[str, Any]) -> bool:
    """Errors enough that the candidate fails the error-rate limit even if every
    remaining request of the step succeeds."""
    least = int(options["min_requests"])
    return candidate.errors > float(options["max_error_rate"]) * max(least, 1) + 1


def higher_is_better(metric: str) -> bool:
    return metric != "absolute_error"


def outcomes(pairs: Iterable[tuple[Any, Any]], metric: str) -> Outcomes:
    """The outcome per labelled row: for ``accuracy`` 1 when the prediction equals the
    label, for ``conversion`` the label itself (0 or 1), for ``absolute_error``
    |prediction - label|. Rows whose label does not fit the metric are skipped."""
    values: list[float] = []
    for outputs, labels in pairs:
        predicted = outputs.get("predictions") if isinstance(outputs, dict) else None
        if not isinstance(predicted, list) or not isinstance(labels, list) or len(
                predicted) != len(labels):
            continue
        for p, y in zip(predicted, labels, strict=True):
            value = _outcome(metric, p, y)
            if value is not None:
                values.append(value)
    return Outcomes.of(values) if values else Outcomes()


def _outcome(metric: str, predicted: Any, label: Any) -> float | None:
    if metric == "accuracy":
        return 1.0 if predicted == label else 0.0
    if isinstance(label, bool) or not isinstance(label, (int, float)):
        return None
    if metric == "conversion":
        return float(label) if label in (0, 1) else None
    if isinstance(predicted, bool) or not isinstance(predicted, (int, float)):
        return None
    value = abs(float(predicted) - float(label))
    return value if math.isfinite(value) else None


def ab_verdict(d: Deployment, stable: ArmTraffic, candidate: ArmTraffic) -> ABResult:
    """One look at an A/B test, carrying the always-valid p-value of the last look."""
    metric = str(d.options["metric"])
    return ab_decision(stable.outcomes, candidate.outcomes, kind=METRICS[metric],
                       alpha=float(d.options["alpha"]),
                       min_samples=int(d.options["min_samples"]),
                       higher_is_better=higher_is_better(metric),
                       previous_always_valid_p=float(d.analysis.get("always_valid_p", 1.0)),
                       metric=metric)


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)

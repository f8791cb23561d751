"""The options of each rollout strategy (PRODUCT.md §3.7): defaults, checks, and one
error that names every problem at once. Pure; standard library only."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from modelhost.entities import Strategy
from modelhost.errors import InvalidInputError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# The A/B metrics and the kind of outcome each gives (stats.sequential's Kind).
METRICS: dict[str, Literal["binary", "continuous"]] = {
    "accuracy": "binary", "conversion": "binary", "absolute_error": "continuous"}

KEEP_PREVIOUS = {"keep_previous_s": 600.0}
DEFAULTS: dict[Strategy, dict[str, Any]] = {
    Strategy.BLUE_GREEN: {**KEEP_PREVIOUS},
    Strategy.CANARY: {"steps": [5.0, 25.0, 50.0, 100.0], "step_duration_s": 300.0,
                      "min_requests": 200, "max_error_rate": 0.02, "max_p99_ratio": 1.5,
                      "metric": "accuracy", "max_metric_drop": 0.05, "min_labelled": 50,
                      **KEEP_PREVIOUS},
    Strategy.AB: {"split": 0.5, "metric": "accuracy", "alpha": 0.05, "min_samples": 200,
                  "auto_promote": False, **KEEP_PREVIOUS},
    Strategy.SHADOW: {"fraction": 0.1, **KEEP_PREVIOUS},
}


def parse_strategy(value: Any) -> Strategy:
    """A strategy from its name (``blue-green`` and ``blue_green`` alike)."""
    if isinstance(value, Strategy):
        return value
    names = ", ".join(s.value for s in Strategy)
    if not isinstance(value, str):
        raise InvalidInputError(f"'strategy' must be one of {names}")
    try:
        return Strategy(value.strip().lower().replace("-", "_"))
    except ValueError:
        raise InvalidInputError(
            f"unknown strategy {value!r}: use one of {names}") from None


def duration_s(value: Any) -> float:
    """Seconds from a number or a text such as ``30s``, ``10m``, ``2h``."""
    if isinstance(value, bool):
        raise ValueError("a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ValueError("a duration in seconds, or a text like 30s, 10m or 2h")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration of 0 s or more")
    return seconds


def _number(low: float, high: float, *, low_open: bool = False,
            integer: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                integer and not float(value).is_integer()):
            raise ValueError(f"{'a whole number' if integer else 'a number'} "
                             f"{'above' if low_open else 'from'} {low:g} to {high:g}")
        number = float(value)
        if not math.isfinite(number) or number > high or number < low or (
                low_open and number == low):
            raise ValueError(f"{'above' if low_open else 'from'} {low:g} to {high:g}")
        return int(number) if integer else number
    return check


def _steps(value: Any) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value or len(value) > 100:
        raise ValueError("a list of 1 to 100 percentages, e.g. [5, 25, 50, 100]")
    steps = [_number(0.0, 100.0, low_open=True)(x) for x in value]
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError("percentages that only grow, e.g. [5, 25, 50, 100]")
    return steps


def _metric(value: Any) -> str:
    if value not in METRICS:
        raise ValueError(f"one of {', '.join(METRICS)}")
    return str(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "keep_previous_s": lambda v: _bounded_duration(v, 7 * 86400.0),
    "steps": _steps,
    "step_duration_s": lambda v: _bounded_duration(v, 7 * 86400.0),
    "min_requests": _number(0, 1e9, integer=True),
    "max_error_rate": _number(0.0, 1.0),
    "max_p99_ratio": _number(1.0, 1000.0),
    "split": _number(0.0, 1.0, low_open=True),
    "metric": _metric,
    "alpha": _number(0.0, 0.5, low_open=True),
    "min_samples": _number(1, 1e9, integer=True),
    "auto_promote": _flag,
    "max_metric_drop": _number(0.0, 1e9),
    "min_labelled": _number(1, 1e9, integer=True),
    "fraction": _number(0.0, 1.0, low_open=True),
}


def _bounded_duration(value: Any, most: float) -> float:
    seconds = duration_s(value)
    if seconds > most:
        raise ValueError(f"at most {most:g} s")
    return seconds


def resolve(strategy: Strategy, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The strategy's options: the defaults with ``given`` checked and applied.

    Raises InvalidInputError naming every unknown option (with the ones the strategy
    has) and every bad value (with what it must be), at once."""
    if given is not None and not isinstance(given, Mapping):
        raise InvalidInputError("'options' must be a JSON object")
    options = dict(DEFAULTS[strategy])
    problems = []
    for key, value in (given or {}).items():
        name = str(key).replace("-", "_")
        if name not in options:
            problems.append(f"unknown option {key!r} for {strategy.value} (its options: "
                            f"{', '.join(sorted(options))})")
            continue
        try:
            options[name] = _CHECKS[name](value)
        except ValueError as exc:
            problems.append(f"option {key!r} must be {exc}")
    if strategy is Strategy.AB and options["split"] >= 1.0:
        problems.append("option 'split' must leave the stable version some traffic "
                        "(below 1)")
    if problems:
        raise InvalidInputError("; ".join(problems))
    return options

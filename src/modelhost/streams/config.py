"""What a server is told to score: ``MODELHOST_STREAMS``, a JSON list of objects with
the options of ``modelhost stream``."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from modelhost.errors import InvalidInputError


@dataclass(frozen=True)
class StreamConfig:
    model: str
    source: str
    sink: str
    dead_letter: str | None = None  # the source's name + -dead (.dead on NATS)
    group: str = "modelhost"
    batch: int = 256
    max_attempts: int = 3
    claim_idle_s: float = 30.0
    from_now: bool = False


_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "source": (str,), "sink": (str,), "dead_letter": (str, type(None)),
    "group": (str,), "batch": (int,), "max_attempts": (int,), "claim_idle_s": (int, float),
    "from_now": (bool,)}
_LIMITS: dict[str, tuple[float, float]] = {
    "batch": (1, 100_000), "max_attempts": (1, 100), "claim_idle_s": (0.01, 86400)}


def parse_streams(text: str) -> list[StreamConfig]:
    """The streams of ``MODELHOST_STREAMS``. Raises InvalidInputError naming the entry
    and the option that is wrong (never its value: URLs may hold passwords)."""
    try:
        entries = json.loads(text)
    except ValueError:
        raise InvalidInputError("MODELHOST_STREAMS is not valid JSON") from None
    if not isinstance(entries, list):
        raise InvalidInputError("MODELHOST_STREAMS must be a JSON list of objects")
    known = {f.name for f in fields(StreamConfig)}
    configs = []
    for i, entry in enumerate(entries):
        where = f"MODELHOST_STREAMS[{i}]"
        if not isinstance(entry, dict):
            raise InvalidInputError(f"{where} must be an object")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InvalidInputError(f"{where} has unknown option(s) {', '.join(unknown)}; "
                                    f"use {', '.join(sorted(known))}")
        missing = [k for k in ("model", "source", "sink") if k not in entry]
        if missing:
            raise InvalidInputError(f"{where} needs {', '.join(missing)}")
        for key, value in entry.items():
            _check(where, key, value)
        configs.append(StreamConfig(**entry))
    return configs


def _check(where: str, key: str, value: Any) -> None:
    given: Any = value  # (isinstance against a tuple of types narrows to object)
    allowed = _TYPES[key]
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise InvalidInputError(f"{where}.{key} must be "
                                f"{' or '.join(t.__name__ for t in allowed)}")
    if key in _LIMITS:
        low, high = _LIMITS[key]
        if not low <= given <= high:
            raise InvalidInputError(f"{where}.{key} must be from {low} to {high}")

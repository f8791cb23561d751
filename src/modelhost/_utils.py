"""Small helpers shared by every layer. Standard library only."""

from __future__ import annotations

import datetime as dt
import math
import re
import time
import unicodedata
from collections.abc import Callable

from modelhost.errors import InvalidInputError, InvalidNameError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_NAME_RULE = "use 1-64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit"


# A request id: the server's (32 hex digits) or a caller's sane X-Request-Id.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": dt.timedelta(seconds=1), "m": dt.timedelta(minutes=1),
          "h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}


_LONGEST = dt.timedelta(weeks=5218)  # 100 years: beyond it, dates stop fitting a datetime


def parse_duration(text: str) -> dt.timedelta:
    """``30s``, ``90m``, ``12h``, ``30d`` or ``4w`` as a timedelta: at least one unit, at
    most 100 years."""
    match = _DURATION.match(text.strip().lower()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise InvalidInputError(f"{text!r} is not a duration; use e.g. 30s, 90m, 12h, 30d "
                                "or 4w")
    duration = int(match.group(1)) * _UNITS[match.group(2)]
    if duration > _LONGEST:
        raise InvalidInputError(f"{text!r} is longer than 100 years (5218w)")
    return duration


class OncePer:
    """Says yes to each key at most once per ``seconds``: so that a failure repeating
    on every request or flush is logged once a minute, not every time."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: dict[str, float] = {}

    def __call__(self, key: str) -> bool:
        now = self._clock()
        if now - self._last.get(key, float("-inf")) < self._seconds:
            return False
        self._last[key] = now
        return True


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def validate_name(value: object, kind: str = "model") -> str:
    """Check a model, alias, experiment or dataset name against PRODUCT.md §1.

    The check runs on the exact string (no normalisation), so look-alike unicode
    letters, control characters and path tricks are all refused.
    """
    if not isinstance(value, str):
        raise InvalidNameError(kind, repr(value), _NAME_RULE)
    if not _NAME.fullmatch(value):
        shown = unicodedata.normalize("NFC", value)[:80]
        raise InvalidNameError(kind, shown, _NAME_RULE)
    return value


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite drops the zone of stored datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


MAX_KEY_LENGTH = 250


def check_key(key: object, kind: str = "key") -> str:
    """A param, metric or tag key: 1-250 printable characters."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH or any(
            ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidInputError(
            f"invalid {kind} {str(key)[:80]!r}: use 1-{MAX_KEY_LENGTH} printable characters")
    return key


def finite_number(what: str, value: object) -> float:
    """A metric value: a finite real number (numpy scalars welcome, booleans not)."""
    if isinstance(value, bool | str):
        raise InvalidInputError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]  # anything float() accepts
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{what} must be finite, got {number}")
    return number

"""Small helpers shared by every layer. Standard library only."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from modelhost.errors import InvalidNameError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_NAME_RULE = "use 1-64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def validate_name(value: object, kind: str = "model") -> str:
    """Check a model, alias, experiment or dataset name against PRODUCT.md §1.

    The check runs on the exact string (no normalisation), so look-alike unicode
    letters, control characters and path tricks are all refused.
    """
    if not isinstance(value, str):
        raise InvalidNameError(kind, repr(value), _NAME_RULE)
    if not _NAME.fullmatch(value) or ".." in value:
        shown = unicodedata.normalize("NFC", value)[:80]
        raise InvalidNameError(kind, shown, _NAME_RULE)
    return value


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite drops the zone of stored datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)

"""The online store: the latest value of each feature view per entity key, for lookups at
prediction time.

Two backends with one interface: SQLite (a file beside the registry's database, the
default) and Redis (shared by every replica). Each holds, per (view, entity key), the
event time of the values and the values as one JSON object, and per view its freshness
(up to when it was materialized). A write never replaces a newer value with an older
one, so a materialization can be rerun, or resumed after an interruption, without
duplicating or losing a row: the store ends as if it had run once.

An entity key is the JSON list of the view's join key values, in the order of its
entities' join keys: ``[42]``, ``["eu", 7]``. Whole floats are written as integers so that
``42`` and ``42.0`` (a key read from a CSV, a key sent in JSON) are one key.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelhost.errors import InvalidInputError

Stored = tuple[float, str | bytes]  # (event time in epoch seconds, the values as JSON)


def entity_key(values: Iterable[Any]) -> str:
    """The key of one entity from its join key values (see the module's doc)."""
    return orjson.dumps([_plain(v) for v in values]).decode()


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise InvalidInputError(f"an entity key is a string or a number, got "
                            f"{type(value).__name__}")


@dataclass(frozen=True)
class Freshness:
    """What the last materialization of a view wrote."""

    view: str
    materialized_until: dt.datetime  # the end of the window it covered
    latest_event: dt.datetime | None  # the newest event time it found
    rows: int  # entity keys it wrote
    at: dt.datetime  # when it finished

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "materialized_until": self.materialized_until.isoformat(),
                "latest_event": self.latest_event.isoformat() if self.latest_event else None,
                "rows": self.rows, "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, data: bytes | str) -> Freshness:
        d = orjson.loads(data)
        return cls(d["view"], dt.datetime.fromisoformat(d["materialized_until"]),
                   dt.datetime.fromisoformat(d["latest_event"]) if d["latest_event"] else None,
                   int(d["rows"]), dt.datetime.fromisoformat(d["at"]))


class OnlineStore(ABC):
    """Latest values per (view, entity key), newer-wins; see the module's doc."""

    where: str  # for messages: the store's kind and place, never a password

    @abstractmethod
    def write(self, view: str, rows: Sequence[tuple[str, float, str | bytes]]) -> None:
        """Store (entity key, event time, values) rows of ``view``; a row older than what
        is stored for its key is ignored."""

    @abstractmethod
    def read(self, lookups: Sequence[tuple[str, str]]) -> list[Stored | None]:
        """The stored values of each (view, entity key), None where there are none, in
        one round trip."""

    async def aread(self, lookups: Sequence[tuple[str, str]]) -> list[Stored | None]:
        """:meth:`read` from the event loop (a backend with an async client overrides)."""
        return self.read(lookups)

    @abstractmethod
    def record(self, freshness: Freshness) -> None:
        """Record the end of a view's materialization."""

    @abstractmethod
    def freshness(self) -> dict[str, Freshness]:
        """Every view's last materialization."""

    def close(self) -> None:  # noqa: B027 - backends without resources need nothing
        """Release connections."""

    async def aclose(self) -> None:
        self.close()


def open_online_store(url: str | None, *, home: Path) -> OnlineStore:
    """The store at ``url``: ``redis://`` (or ``rediss://``) for Redis, ``sqlite:///PATH``
    or a path for SQLite; by default ``HOME/features-online.db``."""
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        from modelhost.features.online_redis import RedisOnlineStore

        return RedisOnlineStore(url)
    from modelhost.features.online_sqlite import SQLiteOnlineStore

    if not url:
        return SQLiteOnlineStore(home / "features-online.db")
    if url.startswith("sqlite:///"):
        return SQLiteOnlineStore(Path(url.removeprefix("sqlite:///")))
    if "://" in url:
        raise InvalidInputError("the online store is a redis:// URL, a sqlite:/// URL or "
                                "a file path")
    return SQLiteOnlineStore(Path(url))

"""Online lookups: a feature service's values for entities, as serving sees them.

For each entity (its join key values) and each view of the service, one stored value is
read: all of a batch's in one round trip. A value older than its view's TTL is *stale*;
no value is *missing*. Either follows the view's ``on_missing``: ``reject`` refuses the
row naming the feature and the entity (422), ``default`` uses the feature's default (null
without one).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelhost.entities import ColumnType
from modelhost.errors import InvalidInputError
from modelhost.features.definitions import FeatureField, FeatureRepo, FeatureView, names_of
from modelhost.features.online import OnlineStore, Stored, entity_key
from modelhost.features.transform import transform


class FeatureMissingError(InvalidInputError):
    """A feature a row needs has no fresh value and its view says reject (422)."""


@dataclass(frozen=True)
class OnlineRow:
    values: dict[str, Any]  # feature name -> value (the default where missing or stale)
    missing: list[str] = field(default_factory=list)  # "view:feature" with no value
    stale: list[str] = field(default_factory=list)  # "view:feature" older than its TTL

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "missing": self.missing, "stale": self.stale}


@dataclass(frozen=True)
class _ViewPart:
    view: FeatureView
    join_keys: tuple[str, ...]
    fields: tuple[tuple[FeatureField, str], ...]  # (feature, its name in the row)
    ttl_s: float | None


class OnlineLookup:
    """The lookups of one feature service (``full_feature_names``: ``view__feature``)."""

    def __init__(self, repo: FeatureRepo, service: str, *,
                 full_feature_names: bool = False) -> None:
        wanted = repo.service_features(service)
        names = names_of(wanted, full=full_feature_names)
        self.service = service
        self.names = names
        parts: dict[str, list[tuple[FeatureField, str]]] = {}
        views: dict[str, FeatureView] = {}
        for (view, feature), name in zip(wanted, names, strict=True):
            parts.setdefault(view.name, []).append((feature, name))
            views[view.name] = view
        self._parts = [_ViewPart(views[v], repo.join_keys(views[v]), tuple(fs),
                                 _ttl_seconds(views[v])) for v, fs in parts.items()]
        self._transformed = [p for p in self._parts if p.view.transformation is not None]
        # The join keys a request must carry, in the order the views name them.
        self.entity_columns = list(dict.fromkeys(k for p in self._parts for k in p.join_keys))

    def lookups(self, entities: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """The (view, entity key) pairs to read, entity by entity, view by view."""
        pairs = []
        for i, entity in enumerate(entities):
            for part in self._parts:
                try:
                    values = [entity[k] for k in part.join_keys]
                except KeyError as exc:
                    raise InvalidInputError(
                        f"row {i}: the join key {exc.args[0]!r} is missing; the feature "
                        f"service {self.service!r} needs {', '.join(self.entity_columns)}"
                    ) from None
                try:
                    pairs.append((part.view.name, entity_key(values)))
                except InvalidInputError as exc:
                    raise InvalidInputError(f"row {i}: {exc.message}") from None
        return pairs

    def assemble(self, entities: Sequence[Mapping[str, Any]], stored: Sequence[Stored | None],
                 *, now: float) -> list[OnlineRow]:
        """The rows of :meth:`lookups`' answers, missing and stale values marked."""
        rows = []
        position = 0
        for _ in entities:
            values: dict[str, Any] = {}
            missing: list[str] = []
            stale: list[str] = []
            for part in self._parts:
                found = stored[position]
                position += 1
                if found is None:
                    decoded = None
                    missing += [f"{part.view.name}:{f.name}" for f, _ in part.fields]
                else:
                    ts, raw = found
                    decoded = orjson.loads(raw)
                    if part.ttl_s is not None and now - ts > part.ttl_s:
                        stale += [f"{part.view.name}:{f.name}" for f, _ in part.fields]
                        decoded = None
                for feature, name in part.fields:
                    values[name] = (feature.default if decoded is None
                                    else decoded.get(feature.name))
            rows.append(OnlineRow(values, missing, stale))
        return rows

    def transform(self, rows: list[OnlineRow]) -> list[OnlineRow]:
        """Each view's transformation on the rows' values of it (see transform.py), in
        place; after :meth:`enforce`, so that a refused row is refused for what it
        lacks, not for what the transformation made of a null."""
        for part in self._transformed:
            self._transform_part(part, rows)
        return rows

    @staticmethod
    def _transform_part(part: _ViewPart, rows: list[OnlineRow]) -> None:
        import pandas as pd

        assert part.view.transformation is not None
        features = {name: feature.name for feature, name in part.fields}
        given = pd.DataFrame([{features[n]: r.values[n] for n in features} for r in rows],
                             columns=list(features.values()))
        for feature, _ in part.fields:  # nulls as NaN in numbers, as in a training frame
            if feature.dtype in _NUMBERS:
                given[feature.name] = pd.to_numeric(given[feature.name])
        result = transform(part.view.transformation, given, list(features.values()),
                           part.view.name)
        whole = {name for feature, name in part.fields if feature.dtype in _WHOLE}
        for i, row in enumerate(result.to_dict(orient="records")):
            for name, feature_name in features.items():
                value = row[feature_name]
                if _missing(value):
                    value = None
                else:
                    value = _plain(value)
                    if name in whole and isinstance(value, float) and value.is_integer():
                        value = int(value)  # a long that a NaN elsewhere made a float
                rows[i].values[name] = value

    def read(self, store: OnlineStore, entities: Sequence[Mapping[str, Any]], *,
             now: dt.datetime | None = None) -> list[OnlineRow]:
        """The rows as stored, missing and stale values marked (then, as serving does,
        :meth:`enforce` and :meth:`transform`)."""
        stored = store.read(self.lookups(entities))
        return self.assemble(entities, stored, now=_seconds(now))

    async def aread(self, store: OnlineStore, entities: Sequence[Mapping[str, Any]], *,
                    now: dt.datetime | None = None) -> list[OnlineRow]:
        """:meth:`read` from the event loop."""
        stored = await store.aread(self.lookups(entities))
        return self.assemble(entities, stored, now=_seconds(now))

    def enforce(self, rows: Sequence[OnlineRow], entities: Sequence[Mapping[str, Any]]
                ) -> None:
        """Raise FeatureMissingError for the first missing or stale feature of a view
        whose policy is ``reject``."""
        rejecting = {p.view.name for p in self._parts if p.view.on_missing == "reject"}
        if not rejecting:
            return
        for i, row in enumerate(rows):
            for kind, refs in (("no value", row.missing), ("a stale value", row.stale)):
                for ref in refs:
                    if ref.partition(":")[0] in rejecting:
                        keys = ", ".join(f"{k}={str(entities[i].get(k))[:40]}"
                                         for k in self.entity_columns)
                        raise FeatureMissingError(
                            f"row {i}: the feature {ref} has {kind} for {keys}")


_WHOLE = frozenset({ColumnType.LONG, ColumnType.INTEGER})
_NUMBERS = _WHOLE | {ColumnType.DOUBLE, ColumnType.FLOAT}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # a numpy scalar


def _ttl_seconds(view: FeatureView) -> float | None:
    return view.ttl.total_seconds() if view.ttl is not None else None


def _seconds(now: dt.datetime | None) -> float:
    return time.time() if now is None else now.timestamp()

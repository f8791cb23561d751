"""Feature lookups at prediction time, for versions bound to a feature service.

A version registered with ``feature_service`` takes requests that carry the entities'
join keys (and any other input of its signature, the request-time fields). Before the
version's own checks, each request's rows get the service's features from the online
store, all in one round trip: the features of the definitions' version the model was
trained with. A missing or stale value follows its view's policy (422 naming the feature
and the entity, or the default). The assembled rows then go the way of any request:
validated against the signature, cached (on the assembled rows, so a new value is a new
answer), batched, predicted and logged with the features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelhost.entities import ModelVersion
from modelhost.errors import InvalidInputError
from modelhost.features.lookup import OnlineLookup
from modelhost.features.online import OnlineStore
from modelhost.features.service import Features


class FeatureBinding:
    """The lookups of one served version."""

    def __init__(self, lookup: OnlineLookup, store: OnlineStore, inputs: Sequence[str]) -> None:
        self.lookup = lookup
        self.store = store
        self._features = frozenset(lookup.names)
        # Join keys the signature does not take are only for the lookup.
        self._keys_only = frozenset(lookup.entity_columns) - frozenset(inputs)

    async def assemble(self, payload: Any) -> tuple[list[dict[str, Any]],
                                                    list[dict[str, Any]]]:
        """The rows of ``payload`` with their features, and the features alone."""
        records = _records(payload, self.lookup)
        for i, record in enumerate(records):
            given = self._features.intersection(record)
            if given:
                raise InvalidInputError(
                    f"row {i}: {', '.join(sorted(given))} comes from the feature service "
                    f"{self.lookup.service!r}; send only "
                    f"{', '.join(self.lookup.entity_columns)} and the request's own fields")
        found = await self.lookup.aread(self.store, records)
        self.lookup.enforce(found, records)
        self.lookup.transform(found)
        rows = []
        for record, row in zip(records, found, strict=True):
            assembled = {k: v for k, v in record.items() if k not in self._keys_only}
            assembled.update(row.values)
            rows.append(assembled)
        return rows, [row.values for row in found]


def binder(features: Features) -> Callable[[ModelVersion], FeatureBinding | None]:
    """What the pool calls as it loads a version: its binding, or None when the version
    is bound to no feature service. Opens the online store on first use."""

    def bind(mv: ModelVersion) -> FeatureBinding | None:
        service = mv.lineage.feature_service
        if service is None:
            return None
        repo = features.current(mv.lineage.features_version).repo
        inputs = [c.name for c in mv.signature.columns] if mv.signature else []
        return FeatureBinding(OnlineLookup(repo, service), features.online, inputs)

    return bind


def _records(payload: Any, lookup: OnlineLookup) -> list[dict[str, Any]]:
    if isinstance(payload, list) and all(isinstance(r, Mapping) for r in payload):
        return [dict(r) for r in payload]
    if isinstance(payload, Mapping) and all(isinstance(c, list) for c in payload.values()):
        columns = list(payload)
        lengths = {len(payload[c]) for c in columns}
        if len(lengths) > 1:
            raise InvalidInputError("the columns of 'inputs' have different lengths")
        return [dict(zip(columns, values, strict=True))
                for values in zip(*(payload[c] for c in columns), strict=True)]
    if isinstance(payload, Mapping) and not any(isinstance(c, list)
                                                for c in payload.values()):
        return [dict(payload)]  # one record
    raise InvalidInputError(f"this model looks its features up from the feature service "
                            f"{lookup.service!r}: send 'inputs' as records or columns "
                            f"naming {', '.join(lookup.entity_columns)}")

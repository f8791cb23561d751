"""The routing table: what each model should serve, as one immutable value.

The watcher builds a new table from the routing state whenever the routing revision
changes and publishes it whole; readers (the pool, the predictor) only ever see a complete
table, never one being updated. Today every model with a production version has one arm
(its production version, weight 1); deployments will add a candidate arm and a shadow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from modelhost.entities import RoutingState
from modelhost.rollout import Routing

# A model opts in to the prediction cache with this tag set to "true".
CACHE_TAG = "serving.cache"
_ON = ("true", "on", "1")


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model's routing facts: how its traffic is split (None: no production
    version), its aliases (alias -> version) and whether its answers are cached."""

    routing: Routing | None
    aliases: Mapping[str, str]
    cached: bool = False


@dataclass(frozen=True)
class RoutingTable:
    """Every served model's entry as of one routing revision (None: nothing read yet)."""

    revision: int | None = None
    models: Mapping[str, ModelEntry] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_state(cls, state: RoutingState, *, only: str | None = None) -> RoutingTable:
        """The table of a routing state; with ``only`` (``serve --model NAME``), of that
        model alone."""
        models = {}
        for m in state.models:
            if only is not None and m.name != only:
                continue
            routing = (Routing.single(m.name, m.production_version)
                       if m.production_version is not None else None)
            models[m.name] = ModelEntry(
                routing=routing, aliases=MappingProxyType(dict(m.aliases)),
                cached=m.tags.get(CACHE_TAG, "").lower() in _ON)
        return cls(revision=state.revision, models=MappingProxyType(models))

    def routing(self, name: str) -> Routing | None:
        entry = self.models.get(name)
        return entry.routing if entry is not None else None

    def wanted(self) -> frozenset[tuple[str, str]]:
        """Every (model, version) the table routes traffic to, shadows included: the set
        the pool keeps loaded and warm."""
        return frozenset((name, version) for name, entry in self.models.items()
                         if entry.routing is not None for version in entry.routing.versions)


EMPTY_TABLE = RoutingTable()

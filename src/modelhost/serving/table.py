"""The routing table: what each model should serve, as one immutable value.

The watcher builds a new table from the routing state whenever the routing revision
changes and publishes it whole; readers (the pool, the predictor) only ever see a complete
table, never one being updated. Today every model with a production version has one arm
(its production version, weight 1), and a rollout under way adds a candidate arm (canary,
A/B) or a shadow, salted with the rollout's id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from modelhost._utils import utcnow
from modelhost.entities import Deployment, RoutingState, Strategy
from modelhost.rollout import Arm, ArmRole, Routing, Shadow

# A model opts in to the prediction cache with this tag set to "true".
CACHE_TAG = "serving.cache"
_ON = ("true", "on", "1")

# A canary's requests without a routing key draw their arm once per window this long
# (rollout.router.WindowedDraw): about the time a batch gathers under load (the
# batcher's max_wait_ms, 2 ms by default), so the requests that would share a model call
# go to one version together. An A/B test keeps one draw per request: its statistics
# count every request as an independent observation.
CANARY_WINDOW_S = 0.002


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model's routing facts: how its traffic is split (None: no production
    version), its aliases (alias -> version) and whether its answers are cached."""

    routing: Routing | None
    aliases: Mapping[str, str]
    cached: bool = False
    keep: frozenset[str] = frozenset()  # versions kept loaded for an instant rollback


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
            routing = (routing_of(m.name, m.production_version, m.deployment)
                       if m.production_version is not None else None)
            models[m.name] = ModelEntry(
                routing=routing, aliases=MappingProxyType(dict(m.aliases)),
                cached=m.tags.get(CACHE_TAG, "").lower() in _ON,
                keep=_kept(m.deployment, m.production_version, utcnow()))
        return cls(revision=state.revision, models=MappingProxyType(models))

    def routing(self, name: str) -> Routing | None:
        entry = self.models.get(name)
        return entry.routing if entry is not None else None

    def wanted(self) -> frozenset[tuple[str, str]]:
        """Every (model, version) the table routes traffic to, shadows included: the set
        the pool keeps loaded and warm."""
        return frozenset((name, version) for name, entry in self.models.items()
                         if entry.routing is not None
                         for version in entry.routing.versions | entry.keep)


def routing_of(model: str, stable: str, deployment: Deployment | None) -> Routing:
    """The routing of a model whose production version is ``stable``: one arm, unless a
    rollout is under way (paused ones too: pausing holds the split, it does not undo it)."""
    d = deployment
    if d is None or not d.state.running or d.candidate is None or d.candidate == stable:
        return Routing.single(model, stable)
    salt = d.rollout_id or ""
    if d.strategy is Strategy.SHADOW:
        return Routing(model, (Arm(stable, 1.0),),
                       shadow=Shadow(d.candidate, d.shadow_fraction or 0.0), salt=salt)
    weight = d.candidate_weight
    if weight <= 0.0:
        return Routing(model, (Arm(stable, 1.0),), salt=salt)
    if weight >= 1.0:
        return Routing(model, (Arm(d.candidate, 1.0, ArmRole.CANDIDATE),), salt=salt)
    window = CANARY_WINDOW_S if d.strategy is Strategy.CANARY else 0.0
    return Routing(model, (Arm(stable, 1.0 - weight),
                           Arm(d.candidate, weight, ArmRole.CANDIDATE)), salt=salt,
                   window_s=window)


def _kept(d: Deployment | None, stable: str | None, now: dt.datetime) -> frozenset[str]:
    if d is None or d.previous is None or d.previous == stable or d.keep_until is None \
            or d.keep_until <= now:
        return frozenset()
    return frozenset({d.previous})


EMPTY_TABLE = RoutingTable()

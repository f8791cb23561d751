"""The deploy step's strategies: a small interface and a registry keyed by name.

``direct`` promotes the registered version to production through the registry service
(``staging`` first when needed), exactly what ``modelhost stage NAME VERSION production``
does, so a running server picks it up on its next refresh. Progressive strategies
(``canary``, ``ab``, ``blue_green``, ``shadow``) plug in here later with their own options
under ``deploy.options``; until then their names are refused with a clear message.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelhost.entities import Stage, StageChange
from modelhost.errors import InvalidInputError
from modelhost.registry import Registry

# Strategies of PRODUCT.md's rollouts, accepted by the spec once they exist.
PLANNED = ("ab", "blue_green", "canary", "shadow")


@dataclass(frozen=True)
class DeployOutcome:
    strategy: str
    model: str
    version: str
    changes: tuple[StageChange, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "model": self.model, "version": self.version,
                "changes": [c.to_dict() for c in self.changes]}


class DeployStrategy(abc.ABC):
    """How a registered version reaches traffic."""

    name: ClassVar[str]

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options this strategy does not know (called when the spec loads)."""
        if options:
            raise InvalidInputError(
                f"deploy strategy {self.name!r} takes no options; got "
                f"{', '.join(sorted(options))}")

    @abc.abstractmethod
    def deploy(self, registry: Registry, model: str, version: str, *,
               options: Mapping[str, Any], reason: str) -> DeployOutcome:
        """Put ``model`` ``version`` into service; return what changed."""


class DirectStrategy(DeployStrategy):
    """Promote to production at once (the previous production version is archived)."""

    name = "direct"

    def deploy(self, registry: Registry, model: str, version: str, *,
               options: Mapping[str, Any], reason: str) -> DeployOutcome:
        changes: list[StageChange] = []
        current = registry.get_version(model, version).stage
        if current is Stage.NONE:
            changes += registry.transition(model, version, Stage.STAGING, reason=reason)
        if current is not Stage.PRODUCTION:
            changes += registry.transition(model, version, Stage.PRODUCTION, reason=reason)
        return DeployOutcome(strategy=self.name, model=model, version=version,
                             changes=tuple(changes))


_STRATEGIES: dict[str, type[DeployStrategy]] = {"direct": DirectStrategy}


def normalize(name: str) -> str:
    """``blue-green`` and ``blue_green`` are the same strategy."""
    return name.strip().lower().replace("-", "_")


def available_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> DeployStrategy:
    """The strategy called ``name``.

    Raises:
        InvalidInputError: a planned strategy that is not available yet, or an unknown one.
    """
    key = normalize(name)
    cls = _STRATEGIES.get(key)
    if cls is not None:
        return cls()
    if key in PLANNED:
        raise InvalidInputError(
            f"deploy strategy {name!r} is not available yet; use 'direct' (promote to "
            "production) for now")
    raise InvalidInputError(
        f"unknown deploy strategy {name!r}; available: {', '.join(available_strategies())}"
        f" (coming later: {', '.join(PLANNED)})")


__all__ = ["PLANNED", "DeployOutcome", "DeployStrategy", "DirectStrategy",
           "available_strategies", "get_strategy", "normalize"]

"""The deploy step's strategies: a small interface and a registry keyed by name.

``direct`` promotes the registered version to production through the registry service
(``staging`` first when needed), exactly what ``modelhost stage NAME VERSION production``
does, so a running server picks it up on its next refresh. The rollout strategies
(``blue_green``, ``canary``, ``ab``, ``shadow``) start a rollout through the rollout
service, exactly what ``modelhost deploy NAME VERSION --strategy S`` does, with their
options under ``deploy.options`` (checked when the spec loads); the servers' controller
takes it from there.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelhost.entities import Stage, StageChange
from modelhost.errors import InvalidInputError
from modelhost.registry import Registry
from modelhost.rollout.options import parse_strategy, resolve
from modelhost.rollout.service import RolloutService

# Strategies of PRODUCT.md's rollouts (§3.7).
ROLLOUTS = ("ab", "blue_green", "canary", "shadow")


@dataclass(frozen=True)
class DeployOutcome:
    strategy: str
    model: str
    version: str
    changes: tuple[StageChange, ...] = field(default=())
    deployment: Mapping[str, Any] | None = None  # a rollout's deployment, as it started

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.strategy, "model": self.model,
                               "version": self.version,
                               "changes": [c.to_dict() for c in self.changes]}
        if self.deployment is not None:
            out["deployment"] = dict(self.deployment)
        return out


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
               options: Mapping[str, Any], reason: str,
               rollouts: RolloutService | None = None) -> DeployOutcome:
        """Put ``model`` ``version`` into service; return what changed."""


class DirectStrategy(DeployStrategy):
    """Promote to production at once (the previous production version is archived)."""

    name = "direct"

    def deploy(self, registry: Registry, model: str, version: str, *,
               options: Mapping[str, Any], reason: str,
               rollouts: RolloutService | None = None) -> DeployOutcome:
        changes: list[StageChange] = []
        current = registry.get_version(model, version).stage
        if current is Stage.NONE:
            changes += registry.transition(model, version, Stage.STAGING, reason=reason)
        if current is not Stage.PRODUCTION:
            changes += registry.transition(model, version, Stage.PRODUCTION, reason=reason)
        return DeployOutcome(strategy=self.name, model=model, version=version,
                             changes=tuple(changes))


class RolloutStrategy(DeployStrategy):
    """Start a rollout (blue-green, canary, A/B or shadow) of the version."""

    name = "rollout"

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]  # one class, four names

    def check_options(self, options: Mapping[str, Any]) -> None:
        resolve(parse_strategy(self.name), options)

    def deploy(self, registry: Registry, model: str, version: str, *,
               options: Mapping[str, Any], reason: str,
               rollouts: RolloutService | None = None) -> DeployOutcome:
        if rollouts is None:
            raise InvalidInputError(f"deploy strategy {self.name!r} needs the rollout service")
        seen = len(registry.stage_history(model))
        deployment = rollouts.deploy(model, version, self.name, options)
        changes = tuple(registry.stage_history(model)[seen:])  # blue-green promotes
        return DeployOutcome(strategy=self.name, model=model, version=version,
                             changes=changes, deployment=deployment.to_dict())


_STRATEGIES: dict[str, type[DeployStrategy]] = {"direct": DirectStrategy}


def normalize(name: str) -> str:
    """``blue-green`` and ``blue_green`` are the same strategy."""
    return name.strip().lower().replace("-", "_")


def available_strategies() -> list[str]:
    return sorted([*_STRATEGIES, *ROLLOUTS])


def get_strategy(name: str) -> DeployStrategy:
    """The strategy called ``name``.

    Raises:
        InvalidInputError: an unknown one.
    """
    key = normalize(name)
    cls = _STRATEGIES.get(key)
    if cls is not None:
        return cls()
    if key in ROLLOUTS:
        return RolloutStrategy(key)
    raise InvalidInputError(
        f"unknown deploy strategy {name!r}; available: {', '.join(available_strategies())}")


__all__ = ["ROLLOUTS", "DeployOutcome", "DeployStrategy", "DirectStrategy",
           "RolloutStrategy", "available_strategies", "get_strategy", "normalize"]

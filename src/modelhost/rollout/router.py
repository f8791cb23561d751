"""The pure router: which version answers one request. No I/O; standard library only.

A deployment splits a model's traffic between a stable and a candidate arm, and may copy
a fraction of it to a shadow version (PRODUCT.md §3.7). A request with an
``X-Routing-Key`` always lands on the same arm (§3.1): the key is hashed with SHA-256,
never with Python's ``hash()``, which is salted per process, so two workers, or one
worker after a restart, would send the same key to different arms.

A canary's requests without a key draw their arm once per short window
(:class:`WindowedDraw`) instead of one by one: the requests that arrive together, and
would share a model call, then go to the same version, so each arm's batches stay as full
as one version's would (drawing per request cuts the candidate's tenth of the traffic
into model calls of two to four requests, and the stable version's into smaller ones).
"""

from __future__ import annotations

import enum
import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Arm", "ArmRole", "Routing", "Shadow", "WindowedDraw", "bucket", "choose",
           "shadowed"]


class ArmRole(str, enum.Enum):
    """The part an arm plays in a deployment; at most one arm per role.

    A ``str`` Enum whose ``str()`` is its value, as ``enum.StrEnum`` (Python 3.11+) would
    be; the project still supports 3.10.
    """

    STABLE = "stable"
    CANDIDATE = "candidate"

    def __str__(self) -> str:
        return self.value


# Canonical arm order: stable first, so the candidate's interval sits at the top of [0, 1)
# and only grows as its weight rises (see ``choose``).
_ROLE_ORDER: dict[ArmRole, int] = {ArmRole.STABLE: 0, ArmRole.CANDIDATE: 1}
_WEIGHT_TOLERANCE = 1e-9
_BELOW_ONE = math.nextafter(1.0, 0.0)


class WindowedDraw:
    """A point in [0, 1) that stays the same for ``window_s`` seconds, then is drawn
    anew: the draw of requests without a routing key that may be grouped.

    Each window's point is an independent draw, so each window (and every request in it)
    lands on an arm with that arm's weight, and over many windows the split follows the
    weights; within one window every request lands on the same arm. Not locked: it is
    called on one event loop (two threads at once could at worst draw twice).
    """

    __slots__ = ("_clock", "_point", "_random", "_until", "_window")

    def __init__(self, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        if not math.isfinite(window_s) or window_s <= 0:
            raise ValueError(f"window_s must be finite and > 0, got {window_s!r}")
        self._window = window_s
        self._clock = clock
        self._random = draw
        self._until = -math.inf
        self._point = 0.0

    def __call__(self) -> float:
        now = self._clock()
        if now >= self._until:
            self._until = now + self._window
            self._point = self._random()
        return self._point


@dataclass(frozen=True, slots=True)
class Arm:
    """One version that answers a share of the traffic."""

    version: str
    weight: float
    role: ArmRole = ArmRole.STABLE


@dataclass(frozen=True, slots=True)
class Shadow:
    """A version that also receives a copy of ``fraction`` (0 < fraction <= 1) of requests;
    its answers are recorded, never returned."""

    version: str
    fraction: float


@dataclass(frozen=True, slots=True)
class Routing:
    """How one model's traffic is split: arms with weights (adding up to 1), optional shadow.

    Invalid routings are programming errors (the rollout service builds them from validated
    options), so construction raises ``ValueError`` rather than a user-facing error.
    Arms are kept in canonical order (stable, then candidate) whatever order they were
    given in, so a key's bucket maps to the same arm however the routing was built.
    ``window_s`` > 0 makes requests without a key draw their arm once per window of that
    many seconds (a :class:`WindowedDraw` of this routing's own, so one per process)
    instead of each its own: ``draw`` is the default draw of :func:`choose`.

    Raises:
        ValueError: no arms; a weight not finite or <= 0; weights not adding up to 1;
            two arms with one version; two arms with one role; a shadow fraction outside
            (0, 1]; a shadow version that is also an arm's version; a window not finite
            or < 0.
    """

    model: str
    arms: tuple[Arm, ...]
    shadow: Shadow | None = None
    salt: str = ""  # the rollout's id: a key keeps its arm within one rollout only
    window_s: float = 0.0
    draw: Callable[[], float] = field(default=random.random, init=False, repr=False,
                                      compare=False)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError(f"Routing of {self.model!r} has no arms; give at least one.")
        for arm in self.arms:
            if not math.isfinite(arm.weight) or arm.weight <= 0:
                raise ValueError(
                    f"Arm {arm.version!r} of {self.model!r} has weight {arm.weight!r}; "
                    "weights must be finite and > 0 (leave a version out instead of 0)."
                )
        total = math.fsum(arm.weight for arm in self.arms)
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            raise ValueError(f"Weights of {self.model!r} add up to {total!r}, not 1.")
        versions = [arm.version for arm in self.arms]
        if len(set(versions)) != len(versions):
            raise ValueError(f"Routing of {self.model!r} repeats a version: {versions!r}.")
        roles = [str(arm.role) for arm in self.arms]
        if len(set(roles)) != len(roles):
            raise ValueError(f"Routing of {self.model!r} repeats a role: {roles!r}.")
        if self.shadow is not None:
            if not 0.0 < self.shadow.fraction <= 1.0:
                raise ValueError(
                    f"Shadow fraction of {self.model!r} is {self.shadow.fraction!r}; "
                    "it must be in (0, 1]."
                )
            if self.shadow.version in versions:
                raise ValueError(
                    f"Shadow version {self.shadow.version!r} of {self.model!r} is also "
                    "an arm; a shadow must be a version that gets no live traffic."
                )
        if not math.isfinite(self.window_s) or self.window_s < 0:
            raise ValueError(
                f"Routing window of {self.model!r} is {self.window_s!r}; it must be finite "
                "and >= 0.")
        canonical = tuple(sorted(self.arms, key=lambda arm: _ROLE_ORDER[arm.role]))
        object.__setattr__(self, "arms", canonical)
        if self.window_s > 0 and len(canonical) > 1:
            object.__setattr__(self, "draw", WindowedDraw(self.window_s))

    @classmethod
    def single(cls, model: str, version: str) -> Routing:
        """One stable arm at weight 1: a model with no rollout in progress."""
        return cls(model, (Arm(version, 1.0),))

    @property
    def versions(self) -> frozenset[str]:
        """Every version this routing may call: the arms' and the shadow's."""
        versions = {arm.version for arm in self.arms}
        if self.shadow is not None:
            versions.add(self.shadow.version)
        return frozenset(versions)

    def weights(self) -> dict[str, float]:
        """Version -> weight in canonical order, the ``weights`` of PRODUCT.md §3.7."""
        return {arm.version: arm.weight for arm in self.arms}


def bucket(key: str, salt: str) -> float:
    """A point in [0, 1) from ``sha256(salt + "\\x00" + key)``: the first 8 bytes,
    big-endian, divided by 2**64.

    Never Python's ``hash()``: it is salted per process, so two workers (or a restart)
    would disagree. The salt (the model's name) keeps one key's buckets independent
    across models; the NUL keeps ``("ab", "c")`` apart from ``("a", "bc")``.
    """
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return _unit(int.from_bytes(digest[:8], "big"))


def _unit(number: int) -> float:
    # number / 2**64 rounds up to 1.0 for the top 2**10 values of 64 bits; keep [0, 1).
    return min(number / 2**64, _BELOW_ONE)


def choose(
    routing: Routing, key: str | None, *, draw: Callable[[], float] | None = None
) -> Arm:
    """The arm for one request.

    With a routing key, ``bucket(key, salt=routing.salt or routing.model)`` is walked
    along the cumulative weights in canonical order (the last arm takes what rounding
    leaves): stable holds [0, w_stable), candidate [w_stable, 1). So the same key always
    gets the same arm within a rollout, and raising the candidate's weight only grows its
    interval downwards: a key never moves from candidate back to stable as a canary
    advances. Without a key, ``draw()`` (a point in [0, 1); by default the routing's own,
    see :class:`Routing`) is walked the same way. A single arm is returned at once,
    without hashing.
    """
    arms = routing.arms
    if len(arms) == 1:
        return arms[0]
    if key is not None:
        point = bucket(key, routing.salt or routing.model)
    else:
        point = (draw or routing.draw)()
    edge = 0.0
    for arm in arms[:-1]:
        edge += arm.weight
        if point < edge:
            return arm
    return arms[-1]


def shadowed(
    routing: Routing, key: str | None, *, draw: Callable[[], float] = random.random
) -> bool:
    """Whether this request is also sent to the shadow version.

    False without a shadow. With a key, ``bucket(key, salt=routing.model + "/shadow")`` <
    fraction: sticky per key, and salted apart from ``choose`` so that which requests are
    shadowed does not depend on their arm. Without a key, ``draw()`` < fraction.
    """
    shadow = routing.shadow
    if shadow is None:
        return False
    point = (bucket(key, f"{routing.salt or routing.model}/shadow") if key is not None
             else draw())
    return point < shadow.fraction

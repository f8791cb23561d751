"""Observers: what watches the prediction path, called once per request after the answer.

The ASGI front sends the answer first and then hands one :class:`Observation` to every
registered observer. Prometheus metrics are one observer; the monitoring sink (the
prediction log) is another. An observer runs on the event loop, so it must only record
or enqueue (never wait on I/O); one that raises is counted
(``modelhost_observer_errors_total``) and logged, at most once a minute, and the others
still run. Nothing an observer does can change or delay a response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelhost._utils import OncePer
from modelhost.rollout import ArmRole
from modelhost.serving.routes import Route

log = logging.getLogger(__name__)

_LOG_EVERY_S = 60.0


@dataclass(slots=True)  # not frozen: built once per request, and frozen costs 1 µs more
class Observation:
    """One answered prediction request (observers read it, never change it).

    ``model`` is None for a name the routing table does not know (so that made-up names
    cannot grow per-model records); ``version`` and ``arm`` are None when no version was
    chosen (refused before, or not found). ``inputs`` (validated: a DataFrame or array)
    and ``predictions``/``probabilities`` are filled only for observers that set
    ``wants_data``, and only for answered predictions.
    """

    route: Route
    model: str | None
    version: str | None
    arm: ArmRole | None
    status: int
    latency_s: float
    rows: int
    request_id: str
    at: float  # time.time() when answered: one clock for every observer
    error_code: str | None = None
    cached: bool | None = None  # None: the cache is not in play for this model
    inputs: Any = None
    predictions: Any = None
    probabilities: Any = None


class Observer(Protocol):
    """Watches answered prediction requests; see the module doc for the rules."""

    name: str
    wants_data: bool

    def observe(self, observation: Observation) -> None: ...


class Observers:
    """The observers of one server (fixed when it is built: whether inputs are kept for
    them is decided once), called in order; failures are counted and logged."""

    def __init__(self, observers: Sequence[Observer] = (), *,
                 on_error: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._observers = tuple(observers)
        self._on_error = on_error
        self._log_now = OncePer(_LOG_EVERY_S, clock=clock)
        # Whether the validated inputs and outputs are kept for the observers.
        self.wants_data = any(o.wants_data for o in self._observers)

    def notify(self, observation: Observation) -> None:
        for observer in self._observers:
            try:
                observer.observe(observation)
            except Exception:  # noqa: BLE001  # an observer never breaks the prediction path
                self._failed(observer.name)

    def _failed(self, name: str) -> None:
        if self._on_error is not None:
            self._on_error(name)
        if self._log_now(name):
            log.exception("observer %r failed (logged at most once a minute; "
                          "modelhost_observer_errors_total counts them all)", name)

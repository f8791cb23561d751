"""The rollout controller: on each tick, analyse every running rollout and act on it.

It reads what every worker and replica counted (the live profiles' minute windows, so
counts are summed from the database, never one process's memory) and the labelled
predictions (feedback), asks :mod:`modelhost.rollout.analysis` for a verdict, and acts
through the rollout service with the rollout id (and step) it read, so that a user's
command in between wins and the controller's stale decision is refused. One process of
all replicas runs it at a time (a lease, taken by the server's loop).

Counting starts at the minute the step (canary) or the test (A/B) started: windows are
one minute wide, so up to a minute of the previous step's traffic may be counted with
the current one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from modelhost._utils import utcnow
from modelhost.entities import Deployment, RolloutState, Strategy
from modelhost.errors import ConflictError
from modelhost.rollout.analysis import (
    ArmTraffic,
    ab_verdict,
    canary_verdict,
    outcomes,
)
from modelhost.rollout.service import RolloutService
from modelhost.store.monitoring import PredictionLogStore
from modelhost.store.profiles import ProfileStore
from modelhost.store.shadows import ShadowStore

log = logging.getLogger(__name__)

MINUTE_S = 60


class Controller:
    def __init__(self, service: RolloutService, profiles: ProfileStore, *,
                 predictions: PredictionLogStore | None = None,
                 shadows: ShadowStore | None = None,
                 now: Callable[[], dt.datetime] = utcnow) -> None:
        self._service = service
        self._profiles = profiles
        self._predictions = predictions
        self._shadows = shadows
        self._now = now

    # --- reading ----------------------------------------------------------------------

    def traffic(self, model: str, version: str, *, since: dt.datetime,
                metric: str | None = None) -> ArmTraffic:
        """What every worker counted for ``version`` from the minute of ``since`` on,
        with the outcomes of its labelled predictions when ``metric`` is given."""
        now = self._now()
        start = _minute(since)
        vectors = (counts for _, _, counts in self._profiles.windows(
            model, version, width_s=MINUTE_S, start=start,
            end=now + dt.timedelta(seconds=MINUTE_S)))
        arm = ArmTraffic.from_vectors(version, vectors)
        if metric is None or self._predictions is None:
            return arm
        _, pairs = self._predictions.labelled(model, version, start=start,
                                              end=now + dt.timedelta(seconds=1))
        return ArmTraffic(arm.version, arm.requests, arm.errors, arm.latency,
                          outcomes(pairs, metric), metric)

    def analysis(self, model: str) -> dict[str, Any]:
        """``GET /v1/deployments/{name}/analysis``: per arm what it did since its step
        (canary) or test (A/B) started, and the verdict the controller would reach now."""
        d = self._service.status(model)
        out: dict[str, Any] = {"model": model, "state": d.state.value,
                               "strategy": None if d.strategy is None else d.strategy.value,
                               "arms": [], "verdict": None, "ab": None, "shadow": None}
        if not d.state.running or d.stable is None or d.candidate is None:
            return out
        stable, candidate, elapsed = self._arms(d)
        out["arms"] = [stable.to_dict() | {"role": "stable"},
                       candidate.to_dict() | {"role": "candidate"}]
        if d.strategy is Strategy.CANARY:
            out["verdict"] = canary_verdict(d, stable, candidate,
                                            elapsed_s=elapsed).to_dict()
        elif d.strategy is Strategy.AB:
            out["ab"] = ab_verdict(d, stable, candidate).to_dict()
        elif d.strategy is Strategy.SHADOW and self._shadows is not None:
            since = _minute(d.started_at or self._now())
            out["shadow"] = {"version": d.candidate, "fraction": d.shadow_fraction,
                             **self._shadows.totals(
                                 model, d.stable, d.candidate, start=since,
                                 end=self._now() + dt.timedelta(seconds=MINUTE_S)).to_dict()}
        return out

    def _arms(self, d: Deployment) -> tuple[ArmTraffic, ArmTraffic, float]:
        assert d.stable is not None and d.candidate is not None
        since = (d.step_started_at if d.strategy is Strategy.CANARY else d.started_at) \
            or self._now()
        metric = str(d.options.get("metric")) if "metric" in d.options else None
        stable = self.traffic(d.model, d.stable, since=since, metric=metric)
        candidate = self.traffic(d.model, d.candidate, since=since, metric=metric)
        return stable, candidate, (self._now() - since).total_seconds()

    # --- acting -----------------------------------------------------------------------

    def tick(self) -> list[Deployment]:
        """Analyse every progressing rollout and act; returns the deployments changed.
        A rollout whose analysis fails is logged and left for the next tick."""
        changed = []
        for d in self._service.running():
            if d.state is not RolloutState.PROGRESSING:
                continue
            try:
                result = self._advance(d)
            except ConflictError:  # a command changed the rollout meanwhile: it wins
                continue
            except Exception:  # one rollout's trouble must not stop the others
                log.exception("rollout controller: %s could not be analysed", d.model)
                continue
            if result is not None:
                changed.append(result)
        return changed

    def _advance(self, d: Deployment) -> Deployment | None:
        if d.strategy is Strategy.CANARY:
            stable, candidate, elapsed = self._arms(d)
            verdict = canary_verdict(d, stable, candidate, elapsed_s=elapsed)
            if verdict.action == "rollback":
                return self._service.rollback(
                    d.model, reason=f"canary failed: {verdict.reason}",
                    numbers=verdict.numbers, expect=d.rollout_id)
            if verdict.action == "step":
                return self._service.act(d.model, "step", reason=verdict.reason,
                                         numbers=verdict.numbers, expect=d.rollout_id,
                                         expect_step=d.step)
            return None
        if d.strategy is Strategy.AB:
            return self._look(d)
        return None

    def _look(self, d: Deployment) -> Deployment | None:
        stable, candidate, _ = self._arms(d)
        result = ab_verdict(d, stable, candidate)
        memory = {"always_valid_p": result.always_valid_p, "decision": result.decision}
        numbers = result.to_dict()
        decided = result.decision != "continue" and d.analysis.get("decision") != \
            result.decision
        if decided and d.options.get("auto_promote"):
            if result.decision == "candidate_better":
                return self._service.act(
                    d.model, "promote", numbers=numbers, expect=d.rollout_id,
                    reason=f"A/B test: the candidate is better ({_words(result.to_dict())})")
            if result.decision == "stable_better":
                return self._service.rollback(
                    d.model, numbers=numbers, expect=d.rollout_id,
                    reason=f"A/B test: the stable version is better "
                           f"({_words(result.to_dict())})")
        if decided:
            return self._service.note(
                d.model, expect=d.rollout_id or "", analysis=memory,
                event=("decision", f"A/B test: {result.decision.replace('_', ' ')} "
                       f"({_words(result.to_dict())})", numbers))
        if memory != dict(d.analysis):
            self._service.note(d.model, expect=d.rollout_id or "", analysis=memory)
        return None


def _words(result: dict[str, Any]) -> str:
    lo, hi = result["ci"]
    return (f"{result.get('metric', 'metric')} lift {result['lift']:+.4g}, always-valid "
            f"interval [{lo:+.4g}, {hi:+.4g}], always-valid p {result['always_valid_p']:.3g}, "
            f"{result['samples']['stable']} and {result['samples']['candidate']} labelled "
            "rows")


def _minute(t: dt.datetime) -> dt.datetime:
    t = t.astimezone(dt.timezone.utc)
    return t.replace(second=0, microsecond=0)

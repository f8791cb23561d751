"""The alert evaluator of a running server, and the actions it runs.

Every worker of every replica runs the loop, but only the holder of the ``alerts`` lease
evaluates (one evaluator across replicas, whichever process took the lease; another
takes over within a few intervals when it dies). Evaluating reads the database in a
worker thread; actions run as their own tasks, so a slow webhook delays neither the next
evaluation nor any request. Each event records what its action did.

Actions:

* ``log``: a warning in the server's log;
* ``webhook``: an HTTP POST of the event as JSON, with a timeout, retried with backoff;
* ``rollback``: through the rollout service, as ``modelhost rollback`` does: a rollout
  under way whose candidate the rule measured stops sending it traffic; otherwise the
  model's previous production version goes back into production. Checked against the
  version the rule measured, so two firings never roll back twice;
* ``pipeline``: ``modelhost pipeline run SPEC --reason ...`` as a child process (the
  training runs outside the server), its exit status recorded when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from modelhost._actor import acting_as
from modelhost._utils import utcnow
from modelhost.monitoring.alerts import AlertService, Evaluator, Health, describe, event_dict
from modelhost.rollout.service import RolloutService
from modelhost.store.alerts import AlertEvent, AlertRule, AlertStore, LeaseStore

log = logging.getLogger(__name__)

LEASE = "alerts"
ACTOR = "alerts"


class ActionRunner:
    """Runs the action of a fired rule and records its outcome on the event."""

    def __init__(self, store: AlertStore, rollouts: RolloutService | None,
                 service: AlertService, *,
                 webhook_timeout_s: float = 5.0, webhook_attempts: int = 3,
                 backoff_s: float = 1.0) -> None:
        self._store = store
        self._rollouts = rollouts  # None: a server without deployments cannot roll back
        self._service = service
        self._timeout = webhook_timeout_s
        self._attempts = webhook_attempts
        self._backoff = backoff_s

    async def run(self, rule: AlertRule, event: AlertEvent) -> tuple[str, str]:
        """Run the action; returns (status, outcome) as stored. Never raises."""
        why = describe(rule, event)
        try:
            if rule.action == "webhook":
                status, outcome = await self._webhook(rule, event, why)
            elif rule.action == "rollback":
                status, outcome = await asyncio.to_thread(self._rollback, event, why)
            elif rule.action == "pipeline":
                status, outcome = await self._pipeline(rule, event, why)
            else:
                log.warning("%s", why)
                status, outcome = "done", "logged"
        except Exception as exc:  # noqa: BLE001  # an action's failure is an outcome
            status, outcome = "failed", f"{type(exc).__name__}: {exc}"[:500]
        try:
            await asyncio.to_thread(self._store.finish, event.id, status=status,
                                    outcome=outcome)
        except Exception:  # the database may be down: say so, go on
            log.warning("alert event %d: %s, %s (not recorded: the database failed)",
                        event.id, status, outcome, exc_info=True)
        return status, outcome

    async def _webhook(self, rule: AlertRule, event: AlertEvent,
                       why: str) -> tuple[str, str]:
        import httpx

        body = {"alert": why, "event": event_dict(event), "rule_id": rule.id}
        problem = ""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            for attempt in range(1, self._attempts + 1):
                try:
                    answer = await client.post(str(rule.options["url"]), json=body)
                    if answer.status_code < 300:
                        return "done", (f"webhook answered {answer.status_code} "
                                        f"(attempt {attempt})")
                    problem = f"answered {answer.status_code}"
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                if attempt < self._attempts:
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        return "failed", f"webhook failed after {self._attempts} attempts: {problem}"

    def _rollback(self, event: AlertEvent, why: str) -> tuple[str, str]:
        if self._rollouts is None:
            return "failed", "this server keeps no deployments: nothing rolled back"
        numbers = {"metric": event.metric, "value": event.value, "op": event.op,
                   "threshold": event.threshold, "samples": event.samples}
        with acting_as(ACTOR):
            served = self._rollouts.rollback(event.model, reason=why, numbers=numbers,
                                             from_version=event.version)
        return "done", f"rolled back {event.model} from {event.version} to {served.stable}"

    async def _pipeline(self, rule: AlertRule, event: AlertEvent,
                        why: str) -> tuple[str, str]:
        spec = self._service.pipeline_path(str(rule.options["spec"]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modelhost.cli", "pipeline", "run", str(spec),
            "--reason", why, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=os.environ.copy())
        await asyncio.to_thread(self._store.finish, event.id, status="pending",
                                outcome=f"pipeline {spec.name} running (pid {process.pid})")
        _, stderr = await process.communicate()
        if process.returncode == 0:
            return "done", f"pipeline {spec.name} finished (exit 0)"
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return "failed", f"pipeline {spec.name} exited with {process.returncode}: " \
            f"{tail[0][:300]}"


class AlertLoop:
    """The background task of one worker: take the lease, evaluate, run the actions.

    With ``health`` and ``publish``, the lease holder also measures the drift and live
    quality of every served version after each pass (``health(now)``, in a worker
    thread) and hands them to ``publish`` (the Prometheus gauges); a process without
    the lease publishes None, so that only the evaluator's numbers are exported."""

    def __init__(self, evaluator: Evaluator, runner: ActionRunner, leases: LeaseStore, *,
                 interval_s: float, now: Callable[[], dt.datetime] = utcnow,
                 health: Callable[[dt.datetime], Sequence[Health]] | None = None,
                 publish: Callable[[Sequence[Health] | None], None] | None = None) -> None:
        self._evaluator = evaluator
        self._runner = runner
        self._leases = leases
        self._interval = interval_s
        self._now = now
        self._health = health
        self._publish = publish
        self.holder = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self._actions: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="modelhost-alerts")

    async def stop(self, *, drain_s: float = 5.0) -> None:
        """Stop evaluating; give running actions ``drain_s`` to finish (and record their
        outcome), cancel what is left (its event stays pending), release the lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._actions:
            await asyncio.wait(list(self._actions), timeout=drain_s)
        for task in list(self._actions):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._leases.release, LEASE, self.holder)

    async def evaluate_once(self) -> list[tuple[AlertRule, AlertEvent]]:
        """One pass if this process holds (or takes) the lease; the fired rules' actions
        are started, not awaited."""
        ttl = dt.timedelta(seconds=max(3 * self._interval, 10.0))
        held = await asyncio.to_thread(self._leases.acquire, LEASE, self.holder, ttl=ttl,
                                       now=self._now())
        if not held:
            if self._publish is not None:
                self._publish(None)
            return []
        fired = await asyncio.to_thread(self._evaluate)
        for rule, event in fired:
            task = asyncio.create_task(self._runner.run(rule, event),
                                       name=f"modelhost-alert-{event.id}")
            self._actions.add(task)
            task.add_done_callback(self._actions.discard)
        if self._health is not None and self._publish is not None:
            try:
                self._publish(await asyncio.to_thread(self._health, self._now()))
            except Exception:  # the alerts went through; the gauges wait for the next pass
                log.exception("measuring the served versions' health failed")
        return fired

    def _evaluate(self) -> list[tuple[AlertRule, AlertEvent]]:
        with acting_as(ACTOR):
            return self._evaluator.evaluate()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.evaluate_once()
            except Exception:  # the loop outlives any single failure (a database down)
                log.exception("alert evaluation failed")

"""The rollout service: the one way a deployment changes (PRODUCT.md §3.7).

Each command is checked first (strategy, options, the version, that it loads and
predicts its input example), then decided and stored in one transaction with the
model's row locked (``DeploymentStore.change``), with an event and an audit entry. The
decisions are pure functions of the deployment and the model's stages, so two commands
that race are decided one after the other: the second sees what the first did and,
when it no longer makes sense (a second promote, a promote after a rollback), gets 409.

Stages follow the deployment: the promoted version becomes ``production`` and the one
it replaced ``archived``; a rollback after a promotion restores both. Until a rollout
is promoted, production stays with the stable version.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from modelhost.entities import Deployment, DeploymentEvent, RolloutState, Strategy
from modelhost.errors import (
    ConflictError,
    InvalidInputError,
    ModelLoadError,
    VersionNotFoundError,
)
from modelhost.registry import Registry
from modelhost.rollout.options import parse_strategy, resolve
from modelhost.store.deployments import Change, DeploymentStore, ModelFacts

ACTIONS = ("promote", "abort", "step", "pause", "resume")


def _a(strategy: Strategy | None) -> str:
    """``a canary``, ``an A/B test``: the rollout named with its article."""
    return strategy.with_article if strategy is not None else "a rollout"


class RolloutService:
    def __init__(self, store: DeploymentStore, *,
                 check: Callable[[str, str], None] | None = None,
                 resolve: Callable[[str, str], str] | None = None,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        """``check(model, version)`` loads the version and predicts its input example,
        raising what fails (ModelLoadError, ...); by default nothing is checked.
        ``resolve(model, ref)`` turns ``latest``, an alias, a stage (``@staging``) or a
        short version into a version; by default a version is taken as given."""
        self._store = store
        self._check = check or (lambda model, version: None)
        self._resolve = resolve or (lambda model, ref: ref)
        self._new_id = new_id

    # --- reads ------------------------------------------------------------------------

    def status(self, model: str) -> Deployment:
        return self._store.get(model)

    def events(self, model: str) -> list[DeploymentEvent]:
        return self._store.events(model)

    def running(self) -> list[Deployment]:
        return self._store.running()

    # --- commands ---------------------------------------------------------------------

    def deploy(self, model: str, version: str, strategy: Any = "canary",
               options: Mapping[str, Any] | None = None) -> Deployment:
        """Start a rollout of ``version``: blue-green switches at once, the others start
        their split (or shadow copy). Raises InvalidInputError (strategy, options, a
        version that does not load or predict its example), NotFoundError, and
        ConflictError (a rollout under way, the version already in production, no
        production version to compare with)."""
        chosen = parse_strategy(strategy)
        resolved = resolve(chosen, options)
        version = self._resolve(model, version)
        current, facts = self._store.get_with_facts(model)  # ModelNotFoundError
        _refuse_deploy(current, version, chosen, facts.stages)  # again when deciding
        self._check(model, version)
        rollout_id = self._new_id()

        def decide(d: Deployment, facts: ModelFacts) -> Change:
            _refuse_deploy(d, version, chosen, facts.stages)
            return _start(d, facts, version, chosen, resolved, rollout_id)

        return self._store.change(model, decide)[0]

    def act(self, model: str, action: str, *, reason: str = "",
            numbers: Mapping[str, Any] | None = None, expect: str | None = None,
            expect_step: int | None = None) -> Deployment:
        """``promote``, ``abort``, ``step``, ``pause`` or ``resume`` the rollout under
        way. ``expect`` (a rollout id) and ``expect_step``: act only if the rollout is
        still that one at that step (the controller decided on what it read). Raises
        InvalidInputError (an unknown action) and ConflictError (nothing under way, an
        action the state does not allow, or another rollout or step than expected)."""
        if action not in ACTIONS:
            raise InvalidInputError(
                f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        decide = _DECISIONS[action]
        words = reason or f"{action} requested"

        def guarded(d: Deployment, facts: ModelFacts) -> Change:
            _expect(d, expect, expect_step)
            return decide(d, facts, words, numbers)

        return self._store.change(model, guarded)[0]

    def rollback(self, model: str, *, reason: str = "",
                 numbers: Mapping[str, Any] | None = None,
                 expect: str | None = None, from_version: str | None = None) -> Deployment:
        """Back to the previous stable version at once: a rollout under way stops
        sending traffic to its candidate; otherwise production goes back to the version
        it had before. Raises NothingToRollBackError (409), and ConflictError when
        ``expect`` names a rollout that is no longer the one under way, or when
        ``from_version`` (the version an alert measured) is no longer the one a rollback
        would leave: the candidate under way, or else the production version."""
        def guarded(d: Deployment, facts: ModelFacts) -> Change:
            _expect(d, expect, None)
            if from_version is not None:
                _expect_leaving(d, from_version)
            return _rollback(d, facts, reason or "rollback requested", numbers)

        return self._store.change(model, guarded)[0]

    def note(self, model: str, *, expect: str, analysis: Mapping[str, Any],
             event: tuple[str, str, Mapping[str, Any]] | None = None) -> Deployment:
        """Keep the controller's memory of a running rollout (``analysis``) and record
        ``event`` (kind, reason, numbers), without changing what is served."""
        def decide(d: Deployment, facts: ModelFacts) -> Change:
            _expect(d, expect, None)
            _running(d)
            events = [] if event is None else [_event(
                d, facts, event[0], event[1], from_version=d.stable, to_version=d.candidate,
                numbers=event[2])]
            return Change(replace(d, analysis=dict(analysis)), events,
                          action="deployment.analysis" if events else "", routing=False)

        return self._store.change(model, decide)[0]


# --- decisions (pure) -----------------------------------------------------------------


def _refuse_deploy(d: Deployment, version: str, strategy: Strategy,
                   stages: Mapping[str, Any]) -> None:
    if version not in stages:
        raise VersionNotFoundError(d.model, version)
    if d.state.running:
        raise ConflictError(
            f"{_a(d.strategy)} of {d.model} {d.candidate} is {d.state.value}; promote, "
            "abort or roll it back first")
    if d.stable == version:
        raise ConflictError(f"{d.model} {version} is already in production")
    if d.stable is None and strategy is not Strategy.BLUE_GREEN:
        raise ConflictError(
            f"{d.model} has no production version to compare {version} with; deploy it "
            "with the blue-green strategy (it switches all traffic at once)")


def _expect(d: Deployment, rollout: str | None, step: int | None) -> None:
    if (rollout is not None and d.rollout_id != rollout) or (
            step is not None and d.step != step):
        raise ConflictError(f"the rollout of {d.model} changed meanwhile; nothing done")


def _expect_leaving(d: Deployment, version: str) -> None:
    """Refuse a rollback that would not leave ``version`` (what an alert measured):
    two firings, or a firing after someone else acted, never roll back twice."""
    if d.state.running:
        if d.candidate == version:
            return
        if d.stable == version:
            raise ConflictError(
                f"{d.model} {version} is the stable version of {_a(d.strategy)} of "
                f"{d.candidate} under way: not rolled back (promote or abort the rollout "
                "first)")
        raise ConflictError(f"{d.model} {version} is no longer served ({_a(d.strategy)} "
                            f"of {d.candidate} is under way): not rolled back")
    if d.stable != version:
        now = f"{d.stable} is" if d.stable else "no version is"
        raise ConflictError(f"{d.model} {version} is no longer in production ({now}): "
                            "not rolled back")


def _event(d: Deployment, facts: ModelFacts, kind: str, reason: str, *,
           from_version: str | None, to_version: str | None,
           numbers: Mapping[str, Any] | None = None, rollout_id: str | None = None
           ) -> DeploymentEvent:
    return DeploymentEvent(model=d.model, kind=kind, at=facts.now, from_version=from_version,
                           to_version=to_version, reason=reason, numbers=numbers or {},
                           rollout_id=rollout_id or d.rollout_id)


def _keep(d: Deployment, facts: ModelFacts) -> dt.datetime:
    return facts.now + dt.timedelta(seconds=float(d.options.get("keep_previous_s", 600.0)))


def _start(d: Deployment, facts: ModelFacts, version: str, strategy: Strategy,
           options: dict[str, Any], rollout_id: str) -> Change:
    _move(d, RolloutState.PROGRESSING)
    base = Deployment(model=d.model, state=RolloutState.PROGRESSING, strategy=strategy,
                      rollout_id=rollout_id, stable=d.stable, candidate=version,
                      options=options, started_at=facts.now, step_started_at=facts.now,
                      previous=d.previous, keep_until=d.keep_until)
    words = strategy.words
    if strategy is Strategy.BLUE_GREEN:
        done = replace(base, state=RolloutState.PROMOTED, candidate=None,
                       previous=d.stable, keep_until=_keep(base, facts) if d.stable else None)
        reason = (f"blue-green switch from {d.stable} to {version}" if d.stable
                  else f"first production version {version}")
        return Change(done, [_event(base, facts, "deploy", reason, from_version=d.stable,
                                    to_version=version, rollout_id=rollout_id),
                             _event(base, facts, "promote", "all traffic switched at once",
                                    from_version=d.stable, to_version=version,
                                    numbers={"weight": 1.0}, rollout_id=rollout_id)],
                      action="deployment.deploy", promote=version,
                      reason=f"blue-green deployment (rollout {rollout_id})",
                      audit_after={"strategy": strategy.value, "options": options})
    if strategy is Strategy.CANARY:
        new = replace(base, steps=tuple(options["steps"]), step=0,
                      candidate_weight=options["steps"][0] / 100.0)
        numbers = {"step": 0, "weight": new.candidate_weight}
    elif strategy is Strategy.AB:
        new = replace(base, candidate_weight=options["split"])
        numbers = {"weight": new.candidate_weight}
    else:
        new = replace(base, shadow_fraction=options["fraction"])
        numbers = {"fraction": options["fraction"]}
    return Change(new, [_event(new, facts, "deploy",
                               f"{words} of {version} against {d.stable} started",
                               from_version=d.stable, to_version=version, numbers=numbers)],
                  action="deployment.deploy",
                  audit_after={"strategy": strategy.value, "options": options,
                               "weights": new.weights})


def _move(d: Deployment, target: RolloutState) -> None:
    if not d.state.can_move_to(target):
        if not d.state.running:
            raise ConflictError(f"{d.model} has no rollout under way (its deployment is "
                                f"{d.state.value})")
        raise ConflictError(f"the rollout of {d.model} {d.candidate} is {d.state.value}: "
                            f"it cannot become {target.value}")


def _running(d: Deployment) -> None:
    if not d.state.running:
        raise ConflictError(
            f"{d.model} has no rollout under way (its deployment is {d.state.value})")


def _promote(d: Deployment, facts: ModelFacts, reason: str,
             numbers: Mapping[str, Any] | None = None) -> Change:
    _running(d)
    _move(d, RolloutState.PROMOTED)
    assert d.candidate is not None
    new = replace(d, state=RolloutState.PROMOTED, candidate=None, candidate_weight=0.0,
                  shadow_fraction=None, previous=d.stable, keep_until=_keep(d, facts))
    return Change(new, [_event(d, facts, "promote", reason, from_version=d.stable,
                               to_version=d.candidate, numbers=numbers)],
                  action="deployment.promote", promote=d.candidate,
                  reason=f"promoted by its rollout {d.rollout_id}: {reason}")


def _abort(d: Deployment, facts: ModelFacts, reason: str,
           numbers: Mapping[str, Any] | None = None) -> Change:
    _running(d)
    _move(d, RolloutState.ABORTED)
    new = replace(d, state=RolloutState.ABORTED, candidate=None, candidate_weight=0.0,
                  shadow_fraction=None)
    return Change(new, [_event(d, facts, "abort", reason, from_version=d.candidate,
                               to_version=d.stable, numbers=numbers)],
                  action="deployment.abort")


def _step(d: Deployment, facts: ModelFacts, reason: str,
          numbers: Mapping[str, Any] | None = None) -> Change:
    _running(d)
    if d.strategy is not Strategy.CANARY:
        raise ConflictError(f"{_a(d.strategy)} has no steps ({d.model}); promote or "
                            "abort it")
    if d.state is RolloutState.PAUSED:
        raise ConflictError(f"the canary of {d.model} {d.candidate} is paused; resume it "
                            "first")
    following = d.step + 1
    if following >= len(d.steps) or d.steps[following] >= 100.0:
        return _promote(d, facts, reason, numbers)
    weight = d.steps[following] / 100.0
    new = replace(d, step=following, candidate_weight=weight, step_started_at=facts.now)
    return Change(new, [_event(d, facts, "step", reason, from_version=d.stable,
                               to_version=d.candidate,
                               numbers={**(numbers or {}), "step": following,
                                        "weight": weight})],
                  action="deployment.step", audit_after={"weights": new.weights})


def _pause(d: Deployment, facts: ModelFacts, reason: str,
           numbers: Mapping[str, Any] | None = None) -> Change:
    _running(d)
    _move(d, RolloutState.PAUSED)
    return Change(replace(d, state=RolloutState.PAUSED),
                  [_event(d, facts, "pause", reason, from_version=d.stable,
                          to_version=d.candidate)], action="deployment.pause")


def _resume(d: Deployment, facts: ModelFacts, reason: str,
            numbers: Mapping[str, Any] | None = None) -> Change:
    if d.state is not RolloutState.PAUSED:
        raise ConflictError(f"{d.model} has no paused rollout (its deployment is "
                            f"{d.state.value})")
    return Change(replace(d, state=RolloutState.PROGRESSING, step_started_at=facts.now),
                  [_event(d, facts, "resume", reason, from_version=d.stable,
                          to_version=d.candidate)], action="deployment.resume")


def _rollback(d: Deployment, facts: ModelFacts, reason: str,
              numbers: Mapping[str, Any] | None = None) -> Change:
    if d.state.running:
        new = replace(d, state=RolloutState.ROLLED_BACK, candidate=None,
                      candidate_weight=0.0, shadow_fraction=None)
        return Change(new, [_event(d, facts, "rollback", reason, from_version=d.candidate,
                                   to_version=d.stable, numbers=numbers)],
                      action="deployment.rollback", audit_after={"reason": reason})
    # Nothing under way: production goes back to the version it had before (the store
    # finds it, or says there is none). The one rolled back from is kept loaded.
    new = replace(d, state=RolloutState.ROLLED_BACK, candidate=None, candidate_weight=0.0,
                  shadow_fraction=None, previous=d.stable, keep_until=_keep(d, facts))
    # The version it goes back to is found by the store (to_version None: filled in).
    return Change(new, [_event(d, facts, "rollback", reason, from_version=d.stable,
                               to_version=None, numbers=numbers)],
                  action="deployment.rollback", rollback=True, reason=reason,
                  audit_after={"reason": reason})


_DECISIONS = {"promote": _promote, "abort": _abort, "step": _step, "pause": _pause,
              "resume": _resume}


def for_registry(store: DeploymentStore, registry: Registry) -> RolloutService:
    """The service as clients and servers use it: versions resolved by the registry and
    checked (loaded, their input example predicted) before a rollout starts."""
    return RolloutService(store, check=check_version(registry),
                          resolve=lambda model, ref: registry.get_version(model, ref).version)


def check_version(registry: Registry) -> Callable[[str, str], None]:
    """``check(model, version)``: load the version and predict its input example (what
    the servers will do before it takes traffic), raising what fails."""
    def check(model: str, version: str) -> None:
        from modelhost.registry.scoring import Scorer

        loaded = registry.load(model, version)
        mv = loaded.version
        if mv.input_example is None:
            return
        scorer = Scorer(mv, loaded.model)
        try:
            scorer.run(scorer.prepare(mv.input_example))
        except Exception as exc:
            # The model's own words may hold local paths: its error's class only.
            raise ModelLoadError(f"{model} {version}", "predicting its input example "
                                 f"raised {type(exc).__name__}; the rollout is refused "
                                 "and the stable version keeps serving") from exc
    return check

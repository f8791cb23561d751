"""Registry.rollback (ModelStore.rollback): the version production had before the current
one goes back into production and the current one is archived, in one transaction with
its stage history, a ``model.rollback`` audit entry and a routing revision bump; refused
(409, nothing changed) when there is nothing to roll back to or production moved on; on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from modelhost import Client
from modelhost._actor import acting_as
from modelhost.entities import Lineage, SemVer, Stage
from modelhost.errors import (
    ConflictError,
    InvalidNameError,
    ModelNotFoundError,
    NothingToRollBackError,
)
from modelhost.serving.errors import status_for
from modelhost.store import ModelStore, NewVersion


def _register(client: Client, version: str, name: str = "iris") -> None:
    """A version row without an artifact: rollback is about stages only."""
    number = SemVer.parse(version)
    ModelStore(client.db).create_version(
        NewVersion(model=name, flavor="python", flavor_meta={}, artifact_digest="0" * 64,
                   artifact_size=1, signature=None, input_example=None, lineage=Lineage()),
        lambda latest: number)


def _promote(client: Client, version: str, name: str = "iris") -> None:
    client.registry.transition(name, version, "staging")
    client.registry.transition(name, version, "production")


def _stages(client: Client, name: str = "iris") -> dict[str, str]:
    return {v.version: v.stage.value for v in client.registry.list_versions(name)}


def _snapshot(client: Client, name: str = "iris") -> tuple[object, ...]:
    """Everything a rollback changes: stages, history, routing revision, audit chain."""
    registry = client.registry
    return (_stages(client, name), registry.stage_history(name), registry.routing_revision(),
            client.audit.verify().entries)


def test_a_rollback_restores_the_previous_production_version(client: Client) -> None:
    registry = client.registry
    _register(client, "1.0.0")
    _register(client, "1.0.1")
    _promote(client, "1.0.0")
    _promote(client, "1.0.1")  # archives 1.0.0
    assert _stages(client) == {"1.0.0": "archived", "1.0.1": "production"}
    revision = registry.routing_revision()
    history = registry.stage_history("iris")

    with acting_as("alerts"):
        changes = registry.rollback("iris", reason="accuracy 0.6 < 0.8",
                                    from_version="1.0.1")

    assert [(c.model, c.version, c.from_stage, c.to_stage, c.reason) for c in changes] == [
        ("iris", "1.0.1", Stage.PRODUCTION, Stage.ARCHIVED,
         "rolled back to 1.0.0: accuracy 0.6 < 0.8"),
        ("iris", "1.0.0", Stage.ARCHIVED, Stage.PRODUCTION, "rollback: accuracy 0.6 < 0.8")]
    assert changes[0].at == changes[1].at
    assert _stages(client) == {"1.0.0": "production", "1.0.1": "archived"}
    assert registry.get_version("iris", "@production").version == "1.0.0"
    assert registry.stage_history("iris") == [*history, *changes]  # what was returned
    # What is served changed: one bump, and the routing state says 1.0.0.
    assert registry.routing_revision() == revision + 1
    state = registry.routing_state()
    assert state.revision == revision + 1
    assert [m.production_version for m in state.models if m.name == "iris"] == ["1.0.0"]
    entries = client.audit.list(action="model.rollback")
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.target, entry.actor, entry.before, entry.after) == (
        "iris", "alerts", {"production": "1.0.1"},
        {"production": "1.0.0", "reason": "accuracy 0.6 < 0.8"})
    assert client.audit.verify().ok


def test_rolling_back_twice_walks_further_back(client: Client) -> None:
    """The production history is a stack: a promotion pushes, a rollback pops. So two
    rollbacks go 1.0.2 -> 1.0.1 -> 1.0.0, never back to the 1.0.2 just rolled back from;
    a third has nothing left."""
    registry = client.registry
    for version in ("1.0.0", "1.0.1", "1.0.2"):
        _register(client, version)
        _promote(client, version)
    first = registry.rollback("iris", reason="first", from_version="1.0.2")
    assert [(c.version, c.to_stage.value) for c in first] == [
        ("1.0.2", "archived"), ("1.0.1", "production")]
    second = registry.rollback("iris", reason="second", from_version="1.0.1")
    assert [(c.version, c.to_stage.value) for c in second] == [
        ("1.0.1", "archived"), ("1.0.0", "production")]
    assert _stages(client) == {"1.0.0": "production", "1.0.1": "archived",
                               "1.0.2": "archived"}
    assert [(e.before, e.after) for e in reversed(client.audit.list(
        action="model.rollback"))] == [
        ({"production": "1.0.2"}, {"production": "1.0.1", "reason": "first"}),
        ({"production": "1.0.1"}, {"production": "1.0.0", "reason": "second"})]
    with pytest.raises(NothingToRollBackError):
        registry.rollback("iris", reason="third")


def test_a_version_promoted_again_by_hand_rolls_back_to_the_one_it_replaced(
        client: Client) -> None:
    registry = client.registry
    for version in ("1.0.0", "1.0.1"):
        _register(client, version)
        _promote(client, version)
    registry.transition("iris", "1.0.0", "production")  # back by hand, from archived
    changes = registry.rollback("iris", reason="r")
    assert [(c.version, c.to_stage.value) for c in changes] == [
        ("1.0.0", "archived"), ("1.0.1", "production")]


def test_no_production_version_is_nothing_to_roll_back(client: Client) -> None:
    _register(client, "1.0.0")
    _register(client, "1.0.1")
    before = _snapshot(client)
    with pytest.raises(NothingToRollBackError) as caught:
        client.registry.rollback("iris", reason="r")
    error = caught.value
    assert isinstance(error, ConflictError) and error.code == "conflict"
    assert status_for(error) == 409
    assert str(error) == "nothing to roll back for 'iris': it has no production version"
    assert _snapshot(client) == before
    # Production archived by hand: still none in production, still nothing to do.
    _promote(client, "1.0.0")
    client.registry.transition("iris", "1.0.0", "archived")
    before = _snapshot(client)
    with pytest.raises(NothingToRollBackError, match="it has no production version"):
        client.registry.rollback("iris", reason="r", from_version="1.0.0")
    assert _snapshot(client) == before


def test_nothing_archived_from_production_is_nothing_to_roll_back(client: Client) -> None:
    for version in ("1.0.0", "1.0.1", "1.0.2", "1.0.3"):
        _register(client, version)
    _promote(client, "1.0.0")
    client.registry.transition("iris", "1.0.1", "archived")  # from none
    client.registry.transition("iris", "1.0.2", "staging")
    client.registry.transition("iris", "1.0.2", "archived")  # from staging
    _promote(client, "1.0.3")  # archives 1.0.0 (from production) ...
    client.registry.transition("iris", "1.0.0", "staging")  # ... now staging again
    assert _stages(client) == {"1.0.0": "staging", "1.0.1": "archived",
                               "1.0.2": "archived", "1.0.3": "production"}
    before = _snapshot(client)
    with pytest.raises(NothingToRollBackError) as caught:
        client.registry.rollback("iris", reason="r", from_version="1.0.3")
    # 1.0.0 was in production before 1.0.3, but is staging now, not archived.
    assert str(caught.value) == ("nothing to roll back for 'iris': no version that was in "
                                 "production before 1.0.3 is archived")
    assert status_for(caught.value) == 409
    assert _snapshot(client) == before


def test_a_from_version_no_longer_in_production_changes_nothing(client: Client) -> None:
    for version in ("1.0.0", "1.0.1", "1.0.2"):
        _register(client, version)
    _promote(client, "1.0.0")
    _promote(client, "1.0.1")
    before = _snapshot(client)
    for stale in ("1.0.0", "1.0.2", "9.9.9"):
        with pytest.raises(ConflictError) as caught:
            client.registry.rollback("iris", reason="r", from_version=stale)
        assert not isinstance(caught.value, NothingToRollBackError)
        assert caught.value.code == "conflict" and status_for(caught.value) == 409
        assert str(caught.value) == (f"iris {stale} is no longer in production (1.0.1 "
                                     "is): not rolled back")
        assert _snapshot(client) == before
    # Without from_version it rolls back whatever is in production.
    client.registry.rollback("iris", reason="by hand")
    assert _stages(client)["1.0.0"] == "production"


def test_unknown_and_invalid_model_names(client: Client) -> None:
    with pytest.raises(ModelNotFoundError):
        client.registry.rollback("nope", reason="r")
    with pytest.raises(InvalidNameError):
        client.registry.rollback("../iris", reason="r")


def test_two_rollbacks_of_the_same_version_at_once_roll_back_once(client: Client) -> None:
    """Two alert firings for 1.0.1 (two evaluators, or a retried action): the model row
    lock (SQLite: the write lock) and ``from_version`` let one roll back."""
    for version in ("1.0.0", "1.0.1"):
        _register(client, version)
        _promote(client, version)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def rollback() -> None:
        barrier.wait(timeout=10)
        try:
            client.registry.rollback("iris", reason="race", from_version="1.0.1")
            outcomes.append("rolled back")
        except ConflictError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=rollback) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert sorted(outcomes) == ["ConflictError", "rolled back"]
    assert _stages(client) == {"1.0.0": "production", "1.0.1": "archived"}
    assert len(client.audit.list(action="model.rollback")) == 1

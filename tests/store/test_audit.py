"""The audit log: every change appended with the change itself, tampering detected."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from tests.fixtures_models import iris_example, iris_model

from modelhost import Client
from modelhost._actor import acting_as
from modelhost.errors import IllegalTransitionError


def _register_two(client: Client) -> None:
    registry = client.registry
    registry.register(iris_model(), name="iris", input_example=iris_example())
    registry.register(iris_model(C=0.01), name="iris", input_example=iris_example())


def test_changes_are_audited_with_actor_before_and_after(client: Client) -> None:
    with acting_as("key:abc (ci)", "req-1"):
        _register_two(client)
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
        client.registry.set_alias("iris", "champion", "1.0.0")
        client.registry.set_alias("iris", "champion", "1.0.1")
        client.registry.delete_alias("iris", "champion")
        client.registry.deprecate("iris", "1.0.1", sunset="2031-01-01")
    entries = list(reversed(client.audit.list()))
    assert [(e.action, e.target) for e in entries] == [
        ("model.register", "iris:1.0.0"), ("model.register", "iris:1.0.1"),
        ("model.stage", "iris:1.0.0"), ("model.stage", "iris:1.0.0"),
        ("model.alias.set", "iris@champion"), ("model.alias.set", "iris@champion"),
        ("model.alias.delete", "iris@champion"), ("model.deprecate", "iris:1.0.1")]
    assert all(e.actor == "key:abc (ci)" and e.request_id == "req-1" for e in entries)
    assert entries[3].before == {"stage": "staging"}
    assert entries[3].after == {"stage": "production", "reason": ""}
    assert entries[5].before == {"version": "1.0.0"} and entries[5].after == {"version": "1.0.1"}
    assert entries[6].before == {"version": "1.0.1"}
    assert entries[7].after == {"sunset": "2031-01-01"}
    result = client.audit.verify()
    assert result.ok and result.entries == 8 and result.head == entries[-1].hash


def test_promotion_audits_the_version_it_archives(client: Client) -> None:
    _register_two(client)
    for version in ("1.0.0", "1.0.1"):
        client.registry.transition("iris", version, "staging")
        client.registry.transition("iris", version, "production")
    stages = [(e.target, e.after["stage"]) for e in reversed(client.audit.list(
        action="model.stage")) if e.after]
    assert stages[-2:] == [("iris:1.0.0", "archived"), ("iris:1.0.1", "production")]


def test_a_refused_change_writes_no_entry(client: Client) -> None:
    _register_two(client)
    before = client.audit.verify().entries
    with pytest.raises(IllegalTransitionError):
        client.registry.transition("iris", "1.0.0", "production")
    assert client.audit.verify().entries == before


def test_the_default_actor_is_the_local_user(client: Client) -> None:
    _register_two(client)
    assert client.audit.list(limit=1)[0].actor.startswith("local:")


@pytest.mark.parametrize("tamper", ["edit", "delete-middle", "reorder", "rehash-one"])
def test_tampering_is_detected(client: Client, tamper: str) -> None:
    _register_two(client)
    client.registry.transition("iris", "1.0.0", "staging")
    client.registry.set_alias("iris", "champion", "1.0.0")
    assert client.audit.verify().ok
    statements = {
        "edit": "UPDATE audit_log SET actor = 'someone else' WHERE seq = 2",
        "delete-middle": "DELETE FROM audit_log WHERE seq = 2",
        "reorder": "UPDATE audit_log SET target = 'iris:9.9.9' WHERE seq = 3",
        # A forger who recomputes the row's own hash still breaks the link to the next.
        "rehash-one": "UPDATE audit_log SET hash = :forged WHERE seq = 2",
    }
    with client.db.engine.begin() as conn:
        conn.execute(text(statements[tamper]), {"forged": "f" * 64})
    result = client.audit.verify()
    assert not result.ok
    assert result.first_bad_seq in (2, 3)
    assert result.problem


def test_concurrent_changes_keep_one_unbroken_chain(client: Client) -> None:
    _register_two(client)
    errors: list[BaseException] = []

    def move(alias: str) -> None:
        try:
            for version in ("1.0.0", "1.0.1", "1.0.0"):
                client.registry.set_alias("iris", alias, version)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(f"a{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    result = client.audit.verify()
    assert result.ok and result.entries == 2 + 4 * 3


def test_nul_characters_cannot_keep_an_entry_out_of_the_log(client: Client) -> None:
    """PostgreSQL cannot store NUL in text; a hostile path must still be logged."""
    with acting_as("anonymous\x00", "req-nul"):
        entry = client.audit.record("access.denied", "GET /v1/keys\x00/x",
                                    after={"reason": "no\x00key", "list": ["a\x00"]})
    stored = client.audit.list(limit=1)[0]
    assert stored == entry
    assert stored.target == "GET /v1/keys\\x00/x" and stored.actor == "anonymous\\x00"
    assert stored.after == {"reason": "no\\x00key", "list": ["a\\x00"]}
    assert client.audit.verify().ok

"""The routing revision: bumped by every change of what is served, in the same transaction;
and the routing state, read in a bounded number of statements whatever the models."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from tests.conftest import TODAY, _truncate_postgres, head_revision, with_iris
from tests.fixtures_models import iris_example, iris_model
from tests.sql_statements import statements

from modelhost import Client, Settings
from modelhost.cli import run
from modelhost.entities import Lineage, RoutedModel, SemVer, Stage
from modelhost.errors import IllegalTransitionError
from modelhost.store import Database, ModelStore, NewVersion
from modelhost.store.database import _MIGRATIONS
from modelhost.store.models import bump_routing_revision


@pytest.fixture
def served(client: Client) -> Client:
    """iris 1.0.0 in production, 1.0.1 registered, alias 'champion' on 1.0.0."""
    with_iris(client).registry.set_alias("iris", "champion", "1.0.0")
    return client


WRITES: dict[str, Callable[[Client], object]] = {
    "register a version": lambda c: c.registry.register(
        iris_model(C=0.1), name="iris", input_example=iris_example()),
    "register a new model": lambda c: c.registry.register(
        iris_model(), name="other", input_example=iris_example()),
    "stage to staging": lambda c: c.registry.transition("iris", "1.0.1", "staging"),
    "promote (archives 1.0.0)": lambda c: (
        c.registry.transition("iris", "1.0.1", "staging"),
        c.registry.transition("iris", "1.0.1", "production")),
    "archive production": lambda c: c.registry.transition("iris", "1.0.0", "archived"),
    "set an alias": lambda c: c.registry.set_alias("iris", "challenger", "1.0.1"),
    "move an alias": lambda c: c.registry.set_alias("iris", "champion", "1.0.1"),
    "delete an alias": lambda c: c.registry.delete_alias("iris", "champion"),
    "set model tags": lambda c: c.registry.set_tags("iris", {"serving.cache": "true"}),
    "deprecate": lambda c: c.registry.deprecate("iris", "1.0.0",
                                                sunset=TODAY + dt.timedelta(days=30)),
}

# How many transactions each write above commits.
TRANSACTIONS = {"promote (archives 1.0.0)": 2}


@pytest.mark.parametrize("write", list(WRITES))
def test_every_change_of_what_is_served_bumps_the_revision(served: Client, write: str) -> None:
    registry = served.registry
    before = registry.routing_revision()
    state_before = registry.routing_state()
    WRITES[write](served)
    after = registry.routing_revision()
    assert after == before + TRANSACTIONS.get(write, 1)
    assert registry.routing_state().revision == after
    assert state_before.revision == before


def test_a_promotion_and_the_archiving_it_causes_are_one_bump(served: Client) -> None:
    registry = served.registry
    registry.transition("iris", "1.0.1", "staging")
    before = registry.routing_revision()
    changes = registry.transition("iris", "1.0.1", "production")
    assert [(c.version, c.to_stage.value) for c in changes] == [
        ("1.0.0", "archived"), ("1.0.1", "production")]
    assert registry.routing_revision() == before + 1
    assert registry.routing_state().models[0].production_version == "1.0.1"


def test_reads_and_refused_writes_do_not_bump(served: Client) -> None:
    registry = served.registry
    before = registry.routing_revision()
    registry.list_models()
    registry.get_model("iris")
    registry.list_versions("iris")
    registry.get_version("iris", "champion")
    registry.get_version("iris", "@production")
    registry.stage_history("iris")
    registry.routing_state()
    registry.transition("iris", "1.0.0", "production")  # already there: no change
    with pytest.raises(IllegalTransitionError):
        registry.transition("iris", "1.0.1", "production")  # none -> production: refused
    assert registry.routing_revision() == before


def test_the_routing_state_matches_the_models(served: Client) -> None:
    registry = served.registry
    registry.register(iris_model(), name="plain", input_example=iris_example())
    registry.set_tags("iris", {"serving.cache": "true", "team": "a"})
    registry.set_alias("iris", "challenger", "1.0.1")
    registry.set_alias("plain", "first", "1.0.0")
    state = registry.routing_state()
    assert state.revision == registry.routing_revision()
    expected = tuple(RoutedModel(name=m.name, production_version=m.production_version,
                                 aliases=dict(m.aliases), tags=dict(m.tags))
                     for m in registry.list_models())
    assert state.models == expected
    assert [m.name for m in state.models] == ["iris", "plain"]
    assert state.models[0].aliases == {"challenger": "1.0.1", "champion": "1.0.0"}
    assert state.models[1].production_version is None


def _new(name: str) -> NewVersion:
    return NewVersion(model=name, flavor="sklearn", flavor_meta={}, artifact_digest="0" * 64,
                      artifact_size=1, signature=None, input_example=None,
                      lineage=Lineage(run_id=None, dataset_versions=(), git_commit=None,
                                      python_version=None, packages={}))


def test_the_routing_state_takes_a_bounded_number_of_statements(db_url: str) -> None:
    db = Database(db_url)
    store = ModelStore(db)
    for i in range(20):
        name = f"m{i:02d}"
        for _ in range(2):
            store.create_version(_new(name), lambda latest: (
                SemVer(1, 0, 0) if latest is None else SemVer(1, 0, 1)))
        store.transition(name, "1.0.0", Stage.STAGING)
        store.transition(name, "1.0.0", Stage.PRODUCTION)
        store.set_alias(name, "champion", "1.0.0")
        store.set_alias(name, "next", "1.0.1")
        store.set_model_tags(name, {"serving.cache": "true", "owner": name})
    with statements(db.engine) as tick:
        revision = store.routing_revision()
    with statements(db.engine) as read:
        state = store.routing_state()
    with statements(db.engine) as listing:
        models = store.list_models()
    assert len(tick) == 1
    assert len(read) == 2  # the stages, aliases and tags in one union; the deployments
    # The models, all their tags, aliases and version numbers: four reads, not 1 + 4 per
    # model (what a tick cost when it listed the models, and the console's model list).
    assert len(listing) == 4
    assert models == [store.get_model(m.name) for m in models]
    assert state.revision == revision
    assert len(state.models) == 20
    assert all(m.production_version == "1.0.0" and m.aliases == {
        "champion": "1.0.0", "next": "1.0.1"} and m.tags["serving.cache"] == "true"
        for m in state.models)
    assert [m.name for m in state.models] == [m.name for m in models]
    db.dispose()


@pytest.mark.postgres
def test_concurrent_bumps_lose_nothing_on_postgres(postgres_url: str) -> None:
    _truncate_postgres(postgres_url)
    db = Database(postgres_url)
    store = ModelStore(db)
    threads_n, writes_n = 8, 10
    for t in range(threads_n):
        store.create_version(_new(f"m{t}"), lambda _latest: SemVer(1, 0, 0))
    before = store.routing_revision()
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(writes_n):
                if t % 2:  # a change with its audit entry
                    store.set_model_tags(f"m{t}", {"i": str(i)})
                else:  # a bump alone, as a change outside the audited registry would
                    with db.session(write=True) as s:
                        bump_routing_revision(s)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.routing_revision() == before + threads_n * writes_n
    db.dispose()


def _alembic(db: Database, action: Callable[[Config], None]) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        action(config)


def test_upgrade_from_the_previous_head_keeps_the_data(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(home=tmp_path / "home", db_url=db_url,
                        artifacts=str(tmp_path / "artifacts"))
    with Client(settings, today=lambda: TODAY) as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
        models = client.registry.list_models()
        _alembic(client.db, lambda cfg: command.downgrade(cfg, "0002"))
        with client.db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")
                                ).scalar() == "0002"
        client.db.dispose()

        monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("MODELHOST_DB_URL", db_url)
        assert run(["db", "upgrade"]) == 0, capsys.readouterr()
        assert client.db.current_revision() == head_revision()
        assert client.registry.list_models() == models
        assert client.registry.routing_revision() == 1
        assert client.registry.routing_state().models[0].production_version == "1.0.0"
        client.registry.set_alias("iris", "champion", "1.0.0")
        assert client.registry.routing_revision() == 2

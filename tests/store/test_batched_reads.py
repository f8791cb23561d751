"""Lists read their rows' parts (tags, aliases, params, metrics...) for all rows at once:
a fixed number of statements whatever the number of rows, and the same entities as
reading each row alone. The web console lists hundreds of models, versions and runs."""

from __future__ import annotations

from tests.sql_statements import statements

from modelhost.entities import Lineage, SemVer
from modelhost.store import Database, ModelStore, NewVersion, TrackingStore


def _new(name: str) -> NewVersion:
    return NewVersion(model=name, flavor="sklearn", flavor_meta={}, artifact_digest="0" * 64,
                      artifact_size=1, signature=None, input_example=None,
                      lineage=Lineage(run_id=None, dataset_versions=(), git_commit=None,
                                      python_version=None, packages={}))


def test_a_model_s_versions_are_read_in_a_fixed_number_of_statements(db_url: str) -> None:
    db = Database(db_url)
    store = ModelStore(db)
    for patch in range(12):
        store.create_version(_new("m"), lambda latest, p=patch: SemVer(1, 0, p))
    store.set_version_tags("m", "1.0.3", {"team": "a", "note": "x"})
    store.set_alias("m", "champion", "1.0.3")
    store.set_alias("m", "next", "1.0.3")
    store.set_alias("m", "old", "1.0.0")
    with statements(db.engine) as read:
        versions = store.list_versions("m")
    assert len(read) == 4  # the model, its versions, their tags, their aliases
    assert [v.version for v in versions] == [f"1.0.{p}" for p in range(12)]
    assert versions == [store.get_version("m", v.version) for v in versions]
    assert versions[3].aliases == ("champion", "next") and versions[3].tags == {
        "team": "a", "note": "x"}
    db.dispose()


def test_runs_are_read_in_a_fixed_number_of_statements(db_url: str) -> None:
    db = Database(db_url)
    store = TrackingStore(db)
    ids = []
    for i in range(15):
        run = store.create_run(f"exp-{i % 3}", name=f"run-{i}")
        ids.append(run.run_id)
        store.log_params(run.run_id, {"i": str(i), "lr": "0.1"})
        store.set_tags(run.run_id, {"kind": "test"})
        for step in range(5):
            store.log_metrics(run.run_id, {"loss": 1.0 / (step + 1), "acc": step / 10},
                              step=step)
        store.log_metrics(run.run_id, {"loss": 0.5}, step=2)  # an older step: not latest
        store.log_metrics(run.run_id, {"acc": 0.99}, step=4)  # same step, later: latest
    with statements(db.engine) as read:
        runs = store.list_runs(limit=100)
    assert len(read) <= 8  # the runs, experiments, params, tags, artifacts, metrics, datasets
    assert sorted(r.run_id for r in runs) == sorted(ids)
    assert runs == [store.get_run(r.run_id) for r in runs]
    assert all(r.metrics == {"loss": 0.2, "acc": 0.99} for r in runs)
    assert store.list_runs("exp-1", limit=100) == [r for r in runs if r.experiment == "exp-1"]
    db.dispose()


def test_experiment_names_are_every_experiment_sorted(db_url: str) -> None:
    db = Database(db_url)
    store = TrackingStore(db)
    for name in ("zeta", "alpha", "mid"):
        store.create_run(name)
    assert store.experiment_names() == ["alpha", "mid", "zeta"]
    db.dispose()


def test_the_newest_versions_are_a_window_of_the_list(db_url: str) -> None:
    db = Database(db_url)
    store = ModelStore(db)
    for patch in range(7):
        store.create_version(_new("m"), lambda latest, p=patch: SemVer(1, 0, p))
    store.set_version_tags("m", "1.0.6", {"team": "a"})
    store.set_version_tags("m", "1.0.1", {"team": "b"})
    every = store.list_versions("m")
    with statements(db.engine) as read:
        newest = store.list_versions("m", newest=3)
    assert len(read) == 4
    assert newest == every[-3:] and newest[-1].tags == {"team": "a"}
    assert store.list_versions("m", newest=0) == []
    assert store.count_versions("m") == 7
    db.dispose()

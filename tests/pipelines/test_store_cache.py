"""The step cache and the store: steps whose results live in the registry or the dataset
store (validate, register, deploy) are skipped only when that store holds them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhost import Client, Settings
from modelhost.entities import Stage
from modelhost.pipelines import (
    Pipeline,
    PipelineResult,
    PipelineRunner,
    RunOptions,
    load_spec,
)
from tests.conftest import TODAY
from tests.pipelines.toy import write_toy

GATES = [{"kind": "threshold", "metric": "accuracy", "min": 0.5}]


@pytest.fixture
def new_home(tmp_path: Path, sqlite_template: Path) -> Iterator[Client]:
    """A second, empty home: its own database and artifact folder."""
    home = tmp_path / "second-home"
    home.mkdir()
    shutil.copy(sqlite_template, home / "modelhost.db")
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                        artifacts=str(home / "artifacts"))
    with Client(settings, today=lambda: TODAY) as c:
        yield c


def statuses(result: PipelineResult) -> dict[str, str]:
    return {s.name: s.status.value for s in result.steps}


def release_pipeline(toy_dir: Path) -> Pipeline:
    return load_spec(write_toy(toy_dir, gates=GATES, register=True, deploy=True))


def test_a_rerun_against_a_new_home_validates_registers_and_deploys_there(
        toy_dir: Path, sqlite_client: Client, new_home: Client) -> None:
    pipeline = release_pipeline(toy_dir)
    first = PipelineRunner(pipeline, sqlite_client).run()
    assert first.ok and set(statuses(first).values()) == {"ran"}

    second = PipelineRunner(pipeline, new_home).run()
    assert second.ok, second.summary()
    # The steps' own outputs are files in the work dir: still valid for any store.
    assert statuses(second) == {"validate": "ran", "prepare": "skipped", "train": "skipped",
                                "evaluate": "skipped", "gate": "skipped", "register": "ran",
                                "deploy": "ran"}
    assert second.registered and second.model_version == "1.0.0"
    version = new_home.registry.get_version("toy", "1.0.0")
    assert version.stage is Stage.PRODUCTION and version.lineage.run_id == second.run_id
    assert "pipeline/validation/toy-data.json" in new_home.tracking.get_run(
        second.run_id).artifacts

    # In that home, everything is now in place: nothing runs again.
    third = PipelineRunner(pipeline, new_home).run()
    assert third.ok and set(statuses(third).values()) == {"skipped"}
    assert [v.version for v in new_home.registry.list_versions("toy")] == ["1.0.0"]


def test_a_version_with_the_recorded_number_from_elsewhere_is_not_taken_for_ours(
        toy_dir: Path, sqlite_client: Client, new_home: Client) -> None:
    pipeline = release_pipeline(toy_dir)
    assert PipelineRunner(pipeline, sqlite_client).run().ok
    # The new home has a toy 1.0.0 too, but not the one this pipeline registered.
    other = load_spec(write_toy(toy_dir.parent / "other", gates=GATES, register=True))
    assert PipelineRunner(other, new_home).run().model_version == "1.0.0"

    result = PipelineRunner(pipeline, new_home).run()
    assert result.ok, result.summary()
    assert statuses(result)["register"] == "ran" and statuses(result)["deploy"] == "ran"
    assert result.model_version == "1.0.1"
    assert new_home.registry.get_model("toy").production_version == "1.0.1"


def test_a_gate_that_compares_with_production_runs_again_when_production_differs(
        toy_dir: Path, sqlite_client: Client, new_home: Client) -> None:
    gates = [{"kind": "not_worse_than_production", "metric": "accuracy"}]
    pipeline = load_spec(write_toy(toy_dir, gates=gates, register=True, deploy=True))
    first = PipelineRunner(pipeline, sqlite_client).run()
    assert first.ok and statuses(first)["gate"] == "ran"
    assert "no production version" in first.gates[0].message

    # Another pipeline's model is in production in the new home: the verdict of the first
    # run (nothing to compare with) says nothing about it.
    other = load_spec(write_toy(toy_dir.parent / "other", register=True, deploy=True,
                                train={"C": 0.001}))
    assert PipelineRunner(other, new_home).run().ok
    second = PipelineRunner(pipeline, new_home).run()
    assert second.ok, second.summary()
    assert statuses(second)["gate"] == "ran"
    assert second.gates[0].details["production_version"] == "1.0.0"

    # It promoted its own version; that is what the gate let through, so the verdict
    # holds and a rerun skips everything.
    assert new_home.registry.get_model("toy").production_version == second.model_version
    third = PipelineRunner(pipeline, new_home).run()
    assert third.ok and set(statuses(third).values()) == {"skipped"}

    # Someone else's version goes to production: the gate must look again.
    assert PipelineRunner(other, new_home).run(RunOptions(force=True)).ok
    assert new_home.registry.get_model("toy").production_version == "1.0.2"
    fourth = PipelineRunner(pipeline, new_home).run()
    assert statuses(fourth)["gate"] == "ran"
    assert fourth.gates[0].details["production_version"] == "1.0.2"

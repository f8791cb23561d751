"""Experiments, runs, metrics, artifacts, datasets and log_model lineage."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tests.fixtures_models import iris, iris_example, iris_model

import modelhost as mh
from modelhost import Client
from modelhost.entities import RunStatus
from modelhost.errors import (
    DatasetNotFoundError,
    InvalidInputError,
    InvalidNameError,
    RunNotFoundError,
)


@pytest.fixture
def fluent(client: Client) -> Iterator[Client]:
    mh.set_client(client)
    yield client
    mh.set_client(None)


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_run_context_manager_finishes_or_fails(fluent: Client) -> None:
    mh.set_experiment("exp")
    with mh.start_run(params={"C": 1.0}, tags={"team": "a"}) as run:
        mh.log_metric("loss", 0.5)
        mh.log_metric("loss", 0.25)
        mh.log_metrics({"auc": 0.9, "loss": 0.1}, step=10)
        mh.set_tag("stage", "dev")
    info = run.info
    assert info.status is RunStatus.FINISHED
    assert info.end_time is not None
    assert info.experiment == "exp"
    assert info.params == {"C": "1.0"}
    assert info.tags == {"team": "a", "stage": "dev"}
    assert info.metrics == {"loss": 0.1, "auc": 0.9}
    assert [(p.step, p.value) for p in run.metric_history("loss")] == [(0, 0.5), (1, 0.25),
                                                                      (10, 0.1)]
    with pytest.raises(RuntimeError), mh.start_run() as failing:
        raise RuntimeError("boom")
    assert failing.info.status is RunStatus.FAILED
    assert mh.active_run() is None


def test_logging_rejects_bad_values(fluent: Client) -> None:
    with pytest.raises(InvalidInputError, match="no active run"):
        mh.log_param("a", 1)
    with mh.start_run() as run:
        for bad in (math.nan, math.inf, "x", True):
            with pytest.raises(InvalidInputError):
                run.log_metric("m", bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            run.log_metric("m", 1.0, step=-1)
        with pytest.raises(InvalidInputError):
            run.log_param("", 1)
    assert run.info.metrics == {}
    with pytest.raises(InvalidNameError):
        mh.set_experiment("../x")
    with pytest.raises(RunNotFoundError):
        fluent.tracking.get_run("0" * 32)


def test_log_model_records_lineage_to_the_run_and_datasets(fluent: Client,
                                                           tmp_path: Path) -> None:
    X, y = iris()
    data = write_csv(tmp_path / "iris.csv", X.assign(target=y))
    with mh.start_run(params={"C": 1.0}) as run:
        dv = mh.log_dataset(data, name="iris-train")
        mh.log_metric("accuracy", 0.96)
        artifact = run.log_artifact(data, name="copy.csv")
        mv = mh.log_model(iris_model(), name="iris", input_example=iris_example())
    assert mv.lineage.run_id == run.run_id
    assert mv.lineage.dataset_versions == ("iris-train@1",)
    assert mv.params == {"C": "1.0"}
    assert mv.metrics == {"accuracy": 0.96}
    info = run.info
    assert info.datasets == ("iris-train@1",)
    assert info.artifacts == {"copy.csv": artifact}
    assert dv.n_rows == 150
    assert dv.schema["sepal_length"] == "double" and dv.schema["target"] == "long"


def test_log_model_with_unknown_dataset_writes_no_version(fluent: Client) -> None:
    with mh.start_run(), pytest.raises(DatasetNotFoundError):
        mh.log_model(iris_model(), name="iris", input_example=iris_example(),
                     datasets=["missing@1"])
    assert fluent.registry.list_models() == []


def test_datasets_are_content_addressed(client: Client, tmp_path: Path) -> None:
    X, _ = iris()
    first = write_csv(tmp_path / "a.csv", X)
    dv1, created1 = client.datasets.add(first, name="iris")
    dv1_again, created_again = client.datasets.add(write_csv(tmp_path / "b.csv", X),
                                                   name="iris")
    assert created1 and not created_again
    assert dv1_again.version == dv1.version == 1
    dv2, created2 = client.datasets.add(write_csv(tmp_path / "c.csv", X.head(100)),
                                        name="iris")
    assert created2 and dv2.version == 2 and dv2.n_rows == 100
    assert [v.version for v in client.datasets.versions("iris")] == [1, 2]
    profile = dv1.profile["columns"]["sepal_length"]
    assert profile["kind"] == "numeric" and profile["nulls"] == 0
    assert profile["min"] == pytest.approx(X["sepal_length"].min())
    restored = client.datasets.materialize(dv1, tmp_path / "restored")
    assert (restored / "data.csv").read_bytes() == first.read_bytes()


def test_dataset_folder_and_bad_inputs(client: Client, tmp_path: Path) -> None:
    X, _ = iris()
    folder = tmp_path / "parts"
    folder.mkdir()
    write_csv(folder / "1.csv", X.head(50))
    write_csv(folder / "2.csv", X.tail(100))
    dv, _ = client.datasets.add(folder, name="parts")
    assert dv.n_rows == 150
    odd = tmp_path / "odd.csv"
    odd.write_text("a,empty,mixed\n1,,x\n2,,3\n")
    dv_odd, _ = client.datasets.add(odd, name="odd")
    assert dv_odd.schema == {"a": "long", "empty": "double", "mixed": "string"}
    assert dv_odd.profile["columns"]["empty"]["null_rate"] == 1.0
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError):
        client.datasets.add(tmp_path / "notes.txt", name="bad")
    with pytest.raises(InvalidNameError):
        client.datasets.add(folder, name="Bad Name")
    assert client.datasets.names() == ["odd", "parts"]


def test_bad_run_arguments_create_no_run(client: Client) -> None:
    for kwargs in ({"params": {"": 1}}, {"tags": {"x" * 300: "v"}}, {"name": "n" * 300}):
        with pytest.raises(InvalidInputError):
            client.tracking.start_run("exp", **kwargs)  # type: ignore[arg-type]
    assert client.tracking.list_runs() == []


def test_the_commit_is_that_of_the_code_folder(sqlite_client: Client, tmp_path: Path) -> None:
    """A run (and a version registered from it) records the commit of the folder its
    code lives in: none for a folder outside git, whatever the current folder is."""
    outside = tmp_path / "pipeline"
    outside.mkdir()
    run = sqlite_client.tracking.start_run("code-dir", code_dir=outside)
    assert run.info.git_commit is None
    version = sqlite_client.registry.register(iris_model(), name="iris",
                                              input_example=iris_example(),
                                              code_dir=outside)
    assert version.lineage.git_commit is None
    run.end()


def test_get_run_takes_a_unique_prefix(client: Client) -> None:
    from modelhost.errors import AmbiguousRunIdError, RunIdTooShortError
    from modelhost.store import TrackingStore

    ids = iter(["0123aaaa" + "0" * 24, "0123bbbb" + "0" * 24])
    store = TrackingStore(client.db, new_run_id=lambda: next(ids))
    first, second = store.create_run("exp"), store.create_run("exp")
    assert client.tracking.get_run("0123a").run_id == first.run_id
    assert client.tracking.get_run(second.run_id).run_id == second.run_id
    with pytest.raises(AmbiguousRunIdError) as caught:
        client.tracking.get_run("0123")
    assert caught.value.candidates == [first.run_id, second.run_id]
    with pytest.raises(RunIdTooShortError):
        client.tracking.get_run("012")
    with pytest.raises(RunNotFoundError):
        client.tracking.get_run("0123c")

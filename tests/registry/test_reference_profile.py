"""Reference profiles of versions: built from the training inputs at registration (or
from the run's dataset by ``log_model``), read back, and attached later (audited); bad
data is refused before anything is stored. SQLite and PostgreSQL alike."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.fixtures_models import iris, iris_example, iris_model

import modelhost as mh
from modelhost import Client, ModelVersion
from modelhost.errors import (
    InvalidInputError,
    ModelNotFoundError,
    SignatureViolationError,
    VersionNotFoundError,
)
from modelhost.stats.profile import Reference

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def artifact_files(client: Client) -> list[Path]:
    root = Path(client.settings.resolved_artifacts)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def training_frame() -> pd.DataFrame:
    """Iris inputs with the label, as a training table holds them."""
    X, y = iris()
    return X.assign(target=y)


def register(client: Client, name: str = "iris", **kwargs: Any) -> ModelVersion:
    return client.registry.register(iris_model(), name=name, input_example=iris_example(),
                                    **kwargs)


def features(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in profile["features"]}


@pytest.fixture
def fluent(client: Client) -> Iterator[Client]:
    mh.set_client(client)
    yield client
    mh.set_client(None)


# --- at registration --------------------------------------------------------------------


def test_registration_stores_the_profile_of_the_training_inputs(client: Client) -> None:
    X, _ = iris()
    mv = register(client, reference_data=training_frame(), reference_source="file iris.csv")
    stored = client.registry.reference("iris", mv.version)
    assert stored is not None
    assert (stored.model, stored.version, stored.rows, stored.source) == (
        "iris", "1.0.0", 150, "file iris.csv")
    # The label is no input of the signature: it is left out, in the signature's order.
    assert [f["name"] for f in stored.profile["features"]] == COLUMNS
    for name, column in features(stored.profile).items():
        values = X[name].to_numpy()
        assert column["kind"] == "numeric"
        assert (column["rows"], column["nulls"]) == (150, 0)
        assert sum(column["counts"]) == 150
        assert len(column["counts"]) == len(column["edges"]) - 1
        assert (column["edges"][0], column["edges"][-1]) == (values.min(), values.max())
        assert column["std"] == pytest.approx(float(np.std(values)), rel=1e-12)
        assert column["distinct"] == len(np.unique(values))
    # The model's own predictions on the data: a classifier's are categories.
    predicted = collections.Counter(str(p) for p in iris_model().predict(X))
    prediction = stored.profile["prediction"]
    assert prediction["kind"] == "categorical"
    assert dict(zip(prediction["categories"], prediction["counts"], strict=True)) == predicted
    # The digest names the stored profile (the layout of the live windows built on it).
    assert Reference.from_dict(stored.profile).digest == stored.digest
    assert len(stored.digest) == 16


def test_a_version_is_found_by_alias_and_without_data_has_no_reference(
        client: Client) -> None:
    first = register(client, reference_data=training_frame())
    second = register(client)
    client.registry.set_alias("iris", "champion", first.version)
    by_alias = client.registry.reference("iris", "champion")
    assert by_alias is not None and by_alias.version == first.version
    assert by_alias == client.registry.reference("iris", first.version)
    assert client.registry.reference("iris", second.version) is None
    assert client.registry.reference("iris", "latest") is None


def test_reference_of_an_unknown_model_or_version_is_not_found(client: Client) -> None:
    with pytest.raises(ModelNotFoundError):
        client.registry.reference("nope", "1.0.0")
    register(client)
    with pytest.raises(VersionNotFoundError):
        client.registry.reference("iris", "9.9.9")


def test_other_columns_of_any_type_and_order_are_left_out(client: Client) -> None:
    frame = training_frame()
    frame = frame.assign(species=frame["target"].map({0: "setosa", 1: "versicolor",
                                                      2: "virginica"}),
                         note=None, seen=pd.Timestamp("2026-01-01"))
    frame = frame[["species", "note", "target", *reversed(COLUMNS), "seen"]]
    mv = register(client, reference_data=frame)
    stored = client.registry.reference("iris", mv.version)
    plain = register(client, reference_data=training_frame()[COLUMNS])
    inputs_only = client.registry.reference("iris", plain.version)
    assert stored is not None and inputs_only is not None
    assert [f["name"] for f in stored.profile["features"]] == COLUMNS
    assert stored == dataclasses.replace(inputs_only, version=mv.version,
                                         created_at=stored.created_at)


def test_reference_data_may_be_records_or_columns(client: Client) -> None:
    frame = training_frame()
    as_frame = register(client, reference_data=frame)
    records = register(client, reference_data=frame.to_dict(orient="records"))
    columns = register(client, reference_data=frame.to_dict(orient="list"))
    stored = [client.registry.reference("iris", mv.version)
              for mv in (as_frame, records, columns)]
    assert len({s.digest if s is not None else None for s in stored}) == 1
    assert stored[0] is not None and stored[0].rows == 150


@pytest.mark.parametrize(("data", "error", "fragment"), [
    (training_frame().drop(columns=["sepal_width", "petal_width"]), InvalidInputError,
     "lacks 2 column(s) of the signature: sepal_width, petal_width"),
    (training_frame().head(0), InvalidInputError, "the reference data has no rows"),
    (training_frame().assign(petal_length="long"), SignatureViolationError,
     "column 'petal_length': expected double, got string"),
], ids=["missing-columns", "no-rows", "wrong-type"])
def test_bad_reference_data_fails_the_registration_and_stores_nothing(
        client: Client, data: pd.DataFrame, error: type[Exception], fragment: str) -> None:
    audit_before = client.audit.list(limit=1000)
    with pytest.raises(error) as raised:
        register(client, reference_data=data)
    assert fragment in str(raised.value)
    assert client.registry.list_models() == []
    assert artifact_files(client) == []
    assert client.audit.list(limit=1000) == audit_before
    # A model that exists keeps its versions and files as they were.
    register(client)
    files = artifact_files(client)
    audit_before = client.audit.list(limit=1000)
    with pytest.raises(error):
        client.registry.register(iris_model(C=0.5), name="iris",
                                 input_example=iris_example(), reference_data=data)
    assert [v.version for v in client.registry.list_versions("iris")] == ["1.0.0"]
    assert artifact_files(client) == files
    assert client.audit.list(limit=1000) == audit_before
    assert client.registry.reference("iris", "1.0.0") is None


def test_missing_columns_message_names_every_one(client: Client) -> None:
    data = training_frame()[["sepal_length", "target"]]
    with pytest.raises(InvalidInputError) as raised:
        register(client, reference_data=data)
    message = str(raised.value)
    assert "lacks 3 column(s)" in message
    for name in ("sepal_width", "petal_length", "petal_width"):
        assert name in message
    assert "it has sepal_length, target" in message


def test_optional_reference_data_that_does_not_fit_is_left_out(client: Client) -> None:
    data = training_frame().drop(columns=["petal_width"])
    mv = register(client, reference_data=data, reference_optional=True)
    assert mv.version == "1.0.0"
    assert client.registry.reference("iris", mv.version) is None


def test_a_version_without_a_column_signature_cannot_have_a_reference(
        client: Client) -> None:
    with pytest.raises(InvalidInputError, match="needs a version with a column signature"):
        client.registry.register(iris_model(), name="bare", reference_data=training_frame())
    assert client.registry.list_models() == []
    assert artifact_files(client) == []


# --- attached later ---------------------------------------------------------------------


def _reference_audit(client: Client) -> list[Any]:
    return [e for e in client.audit.list(limit=1000) if e.action == "model.reference"]


def test_attach_reference_saves_replaces_and_is_audited(client: Client) -> None:
    X, _ = iris()
    register(client)
    mv = register(client)
    client.registry.set_alias("iris", "challenger", mv.version)
    first = client.registry.attach_reference("iris", "challenger", training_frame(),
                                             source="file iris.csv")
    assert (first.version, first.rows, first.source) == ("1.0.1", 150, "file iris.csv")
    assert client.registry.reference("iris", "1.0.1") == first
    assert client.registry.reference("iris", "1.0.0") is None
    [entry] = _reference_audit(client)
    assert entry.target == "iris:1.0.1"
    assert entry.before is None
    assert entry.after == {"digest": first.digest, "source": "file iris.csv", "rows": 150}

    setosa = X.iloc[:50]
    second = client.registry.attach_reference("iris", "1.0.1", setosa, source="dataset s@1")
    assert (second.rows, second.source) == (50, "dataset s@1")
    assert second.digest != first.digest
    assert client.registry.reference("iris", "1.0.1") == second
    newest, older = _reference_audit(client)
    assert older == entry
    assert newest.before == {"digest": first.digest, "source": "file iris.csv"}
    assert newest.after == {"digest": second.digest, "source": "dataset s@1", "rows": 50}
    assert client.audit.verify().ok


@pytest.mark.parametrize(("data", "error"), [
    (training_frame().drop(columns=["sepal_length"]), InvalidInputError),
    (training_frame().head(0), InvalidInputError),
    (training_frame().assign(sepal_width=None), SignatureViolationError),
], ids=["missing-column", "no-rows", "nulls"])
def test_attach_reference_with_bad_data_changes_nothing(
        client: Client, data: pd.DataFrame, error: type[Exception]) -> None:
    mv = register(client, reference_data=training_frame())
    before = client.registry.reference("iris", mv.version)
    audit_before = client.audit.list(limit=1000)
    with pytest.raises(error):
        client.registry.attach_reference("iris", mv.version, data, source="bad.csv")
    assert client.registry.reference("iris", mv.version) == before
    assert client.audit.list(limit=1000) == audit_before


def test_attach_reference_to_unknown_or_signatureless_versions(client: Client) -> None:
    with pytest.raises(ModelNotFoundError):
        client.registry.attach_reference("nope", "1.0.0", training_frame(), source="x")
    client.registry.register(iris_model(), name="bare")
    with pytest.raises(VersionNotFoundError):
        client.registry.attach_reference("bare", "2.0.0", training_frame(), source="x")
    with pytest.raises(InvalidInputError, match="needs a version with a column signature"):
        client.registry.attach_reference("bare", "1.0.0", training_frame(), source="x")
    assert client.registry.reference("bare", "1.0.0") is None
    assert _reference_audit(client) == []


# --- log_model and the run's dataset -----------------------------------------------------


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_log_model_profiles_the_runs_dataset(fluent: Client, tmp_path: Path) -> None:
    data = _csv(tmp_path / "iris.csv", training_frame())
    with mh.start_run():
        mh.log_dataset(data, name="iris-train")
        mv = mh.log_model(iris_model(), name="iris", input_example=iris_example())
    assert mv.lineage.dataset_versions == ("iris-train@1",)
    stored = fluent.registry.reference("iris", mv.version)
    assert stored is not None
    assert (stored.rows, stored.source) == (150, "dataset iris-train@1")
    assert [f["name"] for f in stored.profile["features"]] == COLUMNS
    # The same profile as the data given directly: the file round trip changes nothing.
    direct = register(fluent, reference_data=training_frame())
    same = fluent.registry.reference("iris", direct.version)
    assert same is not None and same.digest == stored.digest


def test_log_model_without_the_signatures_columns_registers_without_reference(
        fluent: Client, tmp_path: Path) -> None:
    X, y = iris()
    data = _csv(tmp_path / "raw.csv", X[["sepal_length", "sepal_width"]].assign(target=y))
    with mh.start_run():
        mh.log_dataset(data, name="raw")
        mv = mh.log_model(iris_model(), name="iris", input_example=iris_example())
    assert mv.version == "1.0.0"
    assert mv.lineage.dataset_versions == ("raw@1",)
    assert fluent.registry.reference("iris", mv.version) is None


def test_log_model_prefers_the_reference_data_given(fluent: Client, tmp_path: Path) -> None:
    data = _csv(tmp_path / "iris.csv", training_frame())
    with mh.start_run():
        mh.log_dataset(data, name="iris-train")
        mv = mh.log_model(iris_model(), name="iris", input_example=iris_example(),
                          reference_data=training_frame().head(60))
    stored = fluent.registry.reference("iris", mv.version)
    assert stored is not None
    assert (stored.rows, stored.source) == (60, "the data given at registration")


def test_log_model_with_given_reference_data_that_does_not_fit_fails(
        fluent: Client, tmp_path: Path) -> None:
    data = _csv(tmp_path / "iris.csv", training_frame())
    with mh.start_run():
        mh.log_dataset(data, name="iris-train")
        with pytest.raises(InvalidInputError, match="petal_width"):
            mh.log_model(iris_model(), name="iris", input_example=iris_example(),
                         reference_data=training_frame().drop(columns=["petal_width"]))
    assert fluent.registry.list_models() == []


def test_log_model_without_datasets_has_no_reference(fluent: Client) -> None:
    with mh.start_run():
        mv = mh.log_model(iris_model(), name="iris", input_example=iris_example())
    assert fluent.registry.reference("iris", mv.version) is None


def test_log_model_with_several_datasets_needs_the_reference_data(
        fluent: Client, tmp_path: Path) -> None:
    """Which of several datasets is the training data is the caller's to say (the run
    keeps no order of them): without reference_data, no reference."""
    train = _csv(tmp_path / "train.csv", training_frame())
    holdout = _csv(tmp_path / "eval.csv", training_frame().iloc[::5])
    with mh.start_run():
        mh.log_dataset(train, name="iris-train")
        mh.log_dataset(holdout, name="iris-eval")
        mv = mh.log_model(iris_model(), name="iris", input_example=iris_example())
        assert fluent.registry.reference("iris", mv.version) is None
        mv = mh.log_model(iris_model(), name="iris", input_example=iris_example(),
                          reference_data=training_frame(), reference_source="train")
    stored = fluent.registry.reference("iris", mv.version)
    assert stored is not None
    assert (stored.source, stored.rows) == ("train", 150)

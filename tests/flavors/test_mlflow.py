"""The mlflow flavor: folders written by the real MLflow, served without MLflow."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import mlflow.onnx
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.models import infer_signature
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from modelhost.entities import ColumnSpec, ColumnType, TensorSpec
from modelhost.errors import (
    InvalidInputError,
    ModelLoadError,
    PathEscapeError,
    UntrustedArtifactError,
)
from modelhost.flavors import flavor_for_path, get_flavor
from modelhost.flavors.mlflow import MlflowFlavor
from modelhost.flavors.onnx import convert_sklearn

from .helpers import assert_no_path, entries, run_isolated, same

TREE = "sklearn.tree._tree.Tree"
# Explicit requirements spare MLflow its dependency inference (it runs a subprocess).
REQUIREMENTS = ["scikit-learn", "skops"]
# MLflow (not modelhost) warns while saving: a type-hint notice, and pandas 3 deprecating
# a comparison in mlflow.models.utils. Only tests that make MLflow save carry this mark.
mlflow_warnings = pytest.mark.filterwarnings(
    "ignore:.*Any type hint is inferred as AnyType:UserWarning",
    "ignore:Operation with range is deprecated:pandas.errors.Pandas4Warning",
)


# --- folders written by MLflow ----------------------------------------------------------


@pytest.fixture(scope="module")
def skops_dir(tmp_path_factory: pytest.TempPathFactory, iris_logistic: Pipeline,
              iris: tuple[pd.DataFrame, pd.Series]) -> Path:
    """Default (skops) format, only skops-safe types, with a signature and an example."""
    X, _ = iris
    path = tmp_path_factory.mktemp("mlflow") / "skops"
    mlflow.sklearn.save_model(iris_logistic, path, serialization_format="skops",
                              signature=infer_signature(X, iris_logistic.predict(X)),
                              input_example=X.head(3), pip_requirements=REQUIREMENTS)
    return path


@pytest.fixture(scope="module")
def forest_skops_dir(tmp_path_factory: pytest.TempPathFactory,
                     forest: RandomForestClassifier) -> Path:
    path = tmp_path_factory.mktemp("mlflow") / "forest"
    mlflow.sklearn.save_model(forest, path, skops_trusted_types=[TREE],
                              pip_requirements=REQUIREMENTS)
    return path


@pytest.fixture(scope="module")
def pickle_dir(tmp_path_factory: pytest.TempPathFactory, forest: RandomForestClassifier,
               iris: tuple[pd.DataFrame, pd.Series]) -> Path:
    X = iris[0].to_numpy()
    path = tmp_path_factory.mktemp("mlflow") / "pickle"
    mlflow.sklearn.save_model(forest, path, serialization_format="pickle",
                              signature=infer_signature(X, forest.predict(iris[0])),
                              input_example=X[:3], pip_requirements=REQUIREMENTS)
    return path


@pytest.fixture(scope="module")
def cloudpickle_dir(tmp_path_factory: pytest.TempPathFactory,
                    forest: RandomForestClassifier) -> Path:
    path = tmp_path_factory.mktemp("mlflow") / "cloudpickle"
    mlflow.sklearn.save_model(forest, path, serialization_format="cloudpickle",
                              pip_requirements=REQUIREMENTS)
    return path


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory, iris_logistic: Pipeline,
             iris: tuple[pd.DataFrame, pd.Series]) -> Path:
    X, _ = iris
    path = tmp_path_factory.mktemp("mlflow") / "onnx"
    mlflow.onnx.save_model(convert_sklearn(iris_logistic, X), path,
                           input_example=X.head(2).to_numpy(dtype=np.float32),
                           pip_requirements=["onnxruntime"])
    return path


@pytest.fixture
def flavor() -> MlflowFlavor:
    flavor = get_flavor("mlflow")
    assert isinstance(flavor, MlflowFlavor)
    return flavor


def _copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(src, dest)
    return dest


def _edit_mlmodel(folder: Path, change: Any) -> None:
    data = yaml.safe_load((folder / "MLmodel").read_text())
    change(data)
    (folder / "MLmodel").write_text(yaml.safe_dump(data))


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# --- MLflow's sklearn flavor -------------------------------------------------------------


@mlflow_warnings
def test_skops_folder_with_signature_and_example(
    flavor: MlflowFlavor, skops_dir: Path, iris_logistic: Pipeline,
    iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path,
) -> None:
    X, _ = iris
    assert flavor_for_path(skops_dir) is flavor
    saved = flavor.import_path(skops_dir, tmp_path)  # only safe types: no trust needed
    assert _files(tmp_path) == _files(skops_dir)
    assert saved.meta["format"] == "mlflow"
    assert saved.meta["inner"] == "sklearn"
    assert saved.meta["serialization_format"] == "skops"
    assert saved.meta["file"] == "model.skops"
    assert saved.meta["trusted_types"] == []
    assert saved.meta["mlflow_flavors"] == ["python_function", "sklearn"]
    json.dumps(saved.meta)

    assert saved.signature is not None
    assert saved.signature.inputs == tuple(
        ColumnSpec(name=c, type=ColumnType.DOUBLE) for c in X.columns
    )
    assert saved.signature.outputs == (TensorSpec(dtype="int64", shape=(-1,)),)
    pd.testing.assert_frame_equal(saved.input_example, X.head(3))

    loaded = flavor.load(tmp_path, saved.meta)
    assert same(loaded.predict(X), iris_logistic.predict(X))
    assert same(loaded.predict(X.to_numpy()), iris_logistic.predict(X))
    assert loaded.classes == [0, 1, 2]
    np.testing.assert_allclose(loaded.predict_proba(X), iris_logistic.predict_proba(X))


@mlflow_warnings
def test_skops_trusted_types_listed_in_mlmodel_are_not_trust(
    flavor: MlflowFlavor, forest_skops_dir: Path, forest: RandomForestClassifier,
    iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path,
) -> None:
    mlmodel = yaml.safe_load((forest_skops_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["skops_trusted_types"] == [TREE]
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError, match=re.escape(TREE)):
        flavor.import_path(forest_skops_dir, dest)
    assert entries(dest) == []
    saved = flavor.import_path(forest_skops_dir, dest, trust_pickle=True)
    assert saved.meta["trusted_types"] == [TREE]
    assert same(flavor.load(dest, saved.meta).predict(iris[0]), forest.predict(iris[0]))


@mlflow_warnings
@pytest.mark.parametrize("kind", ["pickle", "cloudpickle"])
def test_pickle_formats_need_trust(
    flavor: MlflowFlavor, request: pytest.FixtureRequest, kind: str,
    forest: RandomForestClassifier, iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path,
) -> None:
    X, _ = iris
    src: Path = request.getfixturevalue(f"{kind}_dir")
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError, match=f"saved with {kind}"):
        flavor.import_path(src, dest)
    assert entries(dest) == []

    saved = flavor.import_path(src, dest, trust_pickle=True)
    assert saved.meta["serialization_format"] == kind
    assert saved.meta["pickle_trusted"] is True
    loaded = flavor.load(dest, saved.meta)
    assert same(loaded.predict(X), forest.predict(X))
    assert same(loaded.predict(X.to_numpy()), forest.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), forest.predict_proba(X))
    with pytest.raises(UntrustedArtifactError):
        flavor.load(dest, {**saved.meta, "pickle_trusted": False})


@mlflow_warnings
def test_ndarray_example_and_tensor_signature(flavor: MlflowFlavor, pickle_dir: Path,
                                              iris: tuple[pd.DataFrame, pd.Series],
                                              tmp_path: Path) -> None:
    saved = flavor.import_path(pickle_dir, tmp_path, trust_pickle=True)
    assert saved.signature is not None
    assert saved.signature.inputs == (TensorSpec(dtype="float64", shape=(-1, 4)),)
    assert isinstance(saved.input_example, np.ndarray)
    np.testing.assert_array_equal(saved.input_example, iris[0].head(3).to_numpy())


@mlflow_warnings
def test_python_function_section_alone(flavor: MlflowFlavor, pickle_dir: Path,
                                       forest: RandomForestClassifier,
                                       iris: tuple[pd.DataFrame, pd.Series],
                                       tmp_path: Path) -> None:
    """Without a sklearn section, MLflow's own loader assumes pickle; so do we."""
    folder = _copy(pickle_dir, tmp_path)
    _edit_mlmodel(folder, lambda d: d["flavors"].pop("sklearn"))
    with pytest.raises(UntrustedArtifactError):
        flavor.import_path(folder, tmp_path / "dest")
    saved = flavor.import_path(folder, tmp_path / "dest", trust_pickle=True)
    assert saved.meta["serialization_format"] == "pickle"
    assert same(flavor.load(tmp_path / "dest", saved.meta).predict(iris[0]),
                forest.predict(iris[0]))


@mlflow_warnings
def test_malicious_pickle_never_runs_without_trust(flavor: MlflowFlavor, pickle_dir: Path,
                                                   payload_pickle: tuple[bytes, Path],
                                                   tmp_path: Path) -> None:
    data, marker = payload_pickle
    folder = _copy(pickle_dir, tmp_path)
    (folder / "model.pkl").write_bytes(data)
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError):
        flavor.import_path(folder, dest)
    assert not marker.exists()
    assert entries(dest) == []


# --- MLflow's onnx flavor ----------------------------------------------------------------


@mlflow_warnings
def test_onnx_folder(flavor: MlflowFlavor, onnx_dir: Path, iris_logistic: Pipeline,
                     iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    X, _ = iris
    saved = flavor.import_path(onnx_dir, tmp_path)
    assert saved.meta["inner"] == "onnx"
    assert saved.meta["file"] == "model.onnx"
    assert saved.meta["intra_op_num_threads"] == 1
    assert saved.input_example.shape == (2, 4)
    loaded = flavor.load(tmp_path, saved.meta)
    assert same(loaded.predict(X), iris_logistic.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X.to_numpy()),
                               iris_logistic.predict_proba(X), atol=1e-4)
    assert loaded.classes == [0, 1, 2]


# --- what is refused ---------------------------------------------------------------------


def _write_mlmodel(folder: Path, flavors: dict[str, Any]) -> Path:
    folder.mkdir()
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
    return folder


def test_unknown_mlflow_flavor(flavor: MlflowFlavor, tmp_path: Path) -> None:
    folder = _write_mlmodel(tmp_path / "torch", {
        "pytorch": {"model_data": "data", "pytorch_version": "2.3.0"},
        "python_function": {"loader_module": "mlflow.pytorch", "data": "data"},
    })
    with pytest.raises(ModelLoadError) as info:
        flavor.import_path(folder, tmp_path / "dest")
    message = info.value.message
    assert "python_function, pytorch" in message
    assert "'mlflow.pytorch'" in message
    assert "'sklearn' and 'onnx'" in message
    assert isinstance(info.value, InvalidInputError)
    assert entries(tmp_path / "dest") == []


def test_custom_pyfunc_is_refused(flavor: MlflowFlavor, tmp_path: Path) -> None:
    folder = _write_mlmodel(tmp_path / "pyfunc", {
        "python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "m.pkl"},
    })
    with pytest.raises(ModelLoadError, match=re.escape("mlflow.pyfunc.model")):
        flavor.import_path(folder, tmp_path / "dest")


@mlflow_warnings
def test_binary_signature_column_is_unsupported(flavor: MlflowFlavor, skops_dir: Path,
                                                tmp_path: Path) -> None:
    folder = _copy(skops_dir, tmp_path)
    columns = [{"type": "double", "name": "x", "required": True},
               {"type": "binary", "name": "image", "required": True}]
    _edit_mlmodel(folder, lambda d: d["signature"].update(inputs=json.dumps(columns)))
    with pytest.raises(InvalidInputError, match="'image' has type 'binary'") as info:
        flavor.import_path(folder, tmp_path / "dest")
    assert not isinstance(info.value, ModelLoadError)
    assert entries(tmp_path / "dest") == []


@mlflow_warnings
def test_records_example_and_optional_columns(flavor: MlflowFlavor, skops_dir: Path,
                                              iris: tuple[pd.DataFrame, pd.Series],
                                              tmp_path: Path) -> None:
    X, _ = iris
    folder = _copy(skops_dir, tmp_path)
    (folder / "input_example.json").write_text(X.head(2).to_json(orient="records"))
    columns = [{"type": "double", "name": c, "required": i == 0}
               for i, c in enumerate(X.columns)]

    def change(data: dict[str, Any]) -> None:
        data["saved_input_example_info"]["pandas_orient"] = "records"
        data["signature"]["inputs"] = json.dumps(columns)

    _edit_mlmodel(folder, change)
    saved = flavor.import_path(folder, tmp_path / "dest")
    pd.testing.assert_frame_equal(saved.input_example, X.head(2))
    assert saved.signature is not None
    assert [c.required for c in saved.signature.columns] == [True, False, False, False]


@mlflow_warnings
def test_symbolic_links_are_refused(flavor: MlflowFlavor, skops_dir: Path,
                                    tmp_path: Path) -> None:
    folder = _copy(skops_dir, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    os.symlink(secret, folder / "notes.txt")
    dest = tmp_path / "dest"
    with pytest.raises(PathEscapeError, match=re.escape("'notes.txt'")):
        flavor.import_path(folder, dest)
    assert entries(dest) == []


@mlflow_warnings
def test_model_file_outside_the_folder_is_refused(flavor: MlflowFlavor, skops_dir: Path,
                                                  tmp_path: Path) -> None:
    folder = _copy(skops_dir, tmp_path)
    shutil.copy(folder / "model.skops", tmp_path / "outside.skops")
    _edit_mlmodel(folder, lambda d: d["flavors"]["sklearn"].update(
        pickled_model="../outside.skops"))
    with pytest.raises(PathEscapeError):
        flavor.import_path(folder, tmp_path / "dest")


@mlflow_warnings
def test_corrupted_model_file(flavor: MlflowFlavor, skops_dir: Path, tmp_path: Path) -> None:
    folder = _copy(skops_dir, tmp_path)
    (folder / "model.skops").write_bytes(b"garbage")
    dest = tmp_path / "dest"
    with pytest.raises(ModelLoadError) as info:
        flavor.import_path(folder, dest, trust_pickle=True)
    assert info.value.message.startswith("the MLflow model could not be loaded")
    assert_no_path(info.value.message, folder, tmp_path)
    assert entries(dest) == []


def test_broken_mlmodel(flavor: MlflowFlavor, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: [unclosed\n")
    with pytest.raises(ModelLoadError) as info:
        flavor.import_path(folder, tmp_path / "dest")
    assert_no_path(info.value.message, folder)
    (folder / "MLmodel").write_text("just text\n")
    with pytest.raises(ModelLoadError, match="no 'flavors' section"):
        flavor.import_path(folder, tmp_path / "dest")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="MLmodel"):
        flavor.import_path(tmp_path / "empty", tmp_path / "dest")


def test_save_is_not_supported(flavor: MlflowFlavor, forest: RandomForestClassifier,
                               tmp_path: Path) -> None:
    assert not flavor.can_save(forest)
    with pytest.raises(InvalidInputError, match="register the folder's path"):
        flavor.save(forest, tmp_path)


def test_load_checks_meta(flavor: MlflowFlavor, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="unknown inner flavor"):
        flavor.load(tmp_path, {"inner": "pytorch", "file": "model.pkl"})
    with pytest.raises(UntrustedArtifactError):
        flavor.load(tmp_path, {"inner": "sklearn", "file": "model.pkl",
                               "serialization_format": "pickle"})


# --- without MLflow --------------------------------------------------------------------

_SERVE = """
import sys
from pathlib import Path
from sklearn.datasets import load_iris
from modelhost.errors import MissingDependencyError
from modelhost.flavors import flavor_for_path
X, _ = load_iris(return_X_y=True, as_frame=True)
for src, dest, trust, expected in {cases!r}:
    flavor = flavor_for_path(Path(src))
    saved = flavor.import_path(Path(src), Path(dest), trust_pickle=trust)
    loaded = flavor.load(Path(dest), saved.meta)
    kind = saved.meta.get("serialization_format", saved.meta["inner"])
    print(flavor.name, kind, loaded.predict(X).tolist() == expected)
# joblib (imported with scikit-learn above) needs cloudpickle itself; block it from here on.
sys.modules["cloudpickle"] = None
try:
    flavor_for_path(Path({cloud!r})).import_path(Path({cloud!r}), Path({cloud_dest!r}),
                                                 trust_pickle=True)
except MissingDependencyError as exc:
    print("missing:", exc.message)
"""


@mlflow_warnings
def test_served_without_mlflow(skops_dir: Path, pickle_dir: Path, onnx_dir: Path,
                               cloudpickle_dir: Path, forest: RandomForestClassifier,
                               iris_logistic: Pipeline, iris: tuple[pd.DataFrame, pd.Series],
                               tmp_path: Path) -> None:
    """In a fresh interpreter where importing mlflow fails (and, at the end, cloudpickle).

    ``sys.modules[name] = None`` makes any attempt to import ``name`` raise ImportError.
    One interpreter for all cases: starting one with scikit-learn takes seconds.
    """
    X, _ = iris
    cases = [
        (str(skops_dir), str(tmp_path / "skops"), False, iris_logistic.predict(X).tolist()),
        (str(pickle_dir), str(tmp_path / "pickle"), True, forest.predict(X).tolist()),
        (str(onnx_dir), str(tmp_path / "onnx"), False, iris_logistic.predict(X).tolist()),
    ]
    code = _SERVE.format(cases=cases, cloud=str(cloudpickle_dir),
                         cloud_dest=str(tmp_path / "cloud"))
    result = run_isolated(code, blocked=("mlflow",))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["mlflow skops True", "mlflow pickle True", "mlflow onnx True"]
    assert lines[3].startswith("missing: loading a model saved with cloudpickle")
    assert "pip install" in lines[3]
    assert entries(tmp_path / "cloud") == []

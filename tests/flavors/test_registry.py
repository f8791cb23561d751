"""The lazy flavor registry and flavor detection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sklearn.ensemble import RandomForestClassifier

from modelhost.errors import (
    FileNotFoundInputError,
    FlavorDetectionError,
    InvalidInputError,
    UnknownFlavorError,
)
from modelhost.flavors import (
    Flavor,
    available_flavors,
    flavor_for_object,
    flavor_for_path,
    get_flavor,
)
from modelhost.flavors.onnx import convert_sklearn

from .custom_models import LinearScorer
from .helpers import run_isolated


def test_available_flavors_are_the_four_of_the_product() -> None:
    assert available_flavors() == ["mlflow", "onnx", "python", "sklearn"]


@pytest.mark.parametrize("name", ["mlflow", "onnx", "python", "sklearn"])
def test_get_flavor_returns_one_shared_instance(name: str) -> None:
    flavor = get_flavor(name)
    assert isinstance(flavor, Flavor)
    assert flavor.name == name
    assert get_flavor(name) is flavor


def test_unknown_flavor_lists_the_known_ones() -> None:
    with pytest.raises(UnknownFlavorError) as info:
        get_flavor("tensorflow")
    assert "'tensorflow'" in info.value.message
    assert "mlflow, onnx, python, sklearn" in info.value.message


def test_flavor_for_object(forest: RandomForestClassifier, iris: tuple) -> None:
    assert flavor_for_object(forest).name == "sklearn"
    assert flavor_for_object(convert_sklearn(forest, iris[0])).name == "onnx"
    assert flavor_for_object(LinearScorer()).name == "python"
    assert flavor_for_object("package.module:Model").name == "python"


@pytest.mark.parametrize("model", [object(), 42, "not an import path", {"predict": 1}])
def test_flavor_for_object_refuses_objects_without_predict(model: object) -> None:
    with pytest.raises(InvalidInputError, match="predict method"):
        flavor_for_object(model)


@pytest.mark.parametrize(
    ("name", "flavor"),
    [("m.onnx", "onnx"), ("m.skops", "sklearn"), ("m.joblib", "sklearn"),
     ("m.pkl", "sklearn"), ("M.PICKLE", "sklearn")],
)
def test_flavor_for_path_by_suffix(tmp_path: Path, name: str, flavor: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"not read")
    assert flavor_for_path(path).name == flavor


def test_flavor_for_path_mlflow_folder(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "model.skops").write_bytes(b"")
    assert flavor_for_path(tmp_path).name == "mlflow"


def test_flavor_for_path_undetectable(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("?")
    with pytest.raises(FlavorDetectionError, match=re.escape("'model.txt'")):
        flavor_for_path(tmp_path / "model.txt")
    with pytest.raises(FlavorDetectionError):
        flavor_for_path(tmp_path)  # a folder without MLmodel
    with pytest.raises(FileNotFoundInputError):
        flavor_for_path(tmp_path / "missing.onnx")


@pytest.mark.parametrize(
    ("name", "file"),
    [("sklearn", "m.skops"), ("onnx", "m.onnx"), ("python", "m.skops"), ("mlflow", "model")],
)
def test_import_of_a_missing_path(tmp_path: Path, name: str, file: str) -> None:
    with pytest.raises(FileNotFoundInputError):
        get_flavor(name).import_path(tmp_path / file, tmp_path / "dest", trust_pickle=True)
    assert not (tmp_path / "dest").exists()


def test_python_flavor_is_never_detected(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"")
    assert get_flavor("python").detect(path) is False


def test_registry_imports_no_ml_library() -> None:
    """Importing and instantiating every flavor must stay cheap: ML libraries load lazily."""
    result = run_isolated(
        "from modelhost.flavors import available_flavors, get_flavor\n"
        "for name in available_flavors():\n"
        "    get_flavor(name)\n"
        "heavy = ['sklearn', 'skops', 'onnx', 'onnxruntime', 'skl2onnx', 'pandas', 'numpy',\n"
        "         'mlflow', 'joblib', 'yaml']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

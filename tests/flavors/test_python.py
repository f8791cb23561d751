"""The python flavor: any object with predict, stored with skops or as an import path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io

from modelhost.errors import InvalidInputError, ModelLoadError, UntrustedArtifactError
from modelhost.flavors import get_flavor
from modelhost.flavors.python import PythonFlavor

from . import custom_models
from .custom_models import LinearScorer, ThresholdClassifier, WithLambda
from .helpers import assert_no_path, entries, same

MODULE = custom_models.__name__


@pytest.fixture
def flavor() -> PythonFlavor:
    flavor = get_flavor("python")
    assert isinstance(flavor, PythonFlavor)
    return flavor


def test_object_round_trip(flavor: PythonFlavor, iris: tuple[pd.DataFrame, pd.Series],
                           tmp_path: Path) -> None:
    X, _ = iris
    model = LinearScorer()
    assert flavor.can_save(model)
    saved = flavor.save(model, tmp_path)
    assert entries(tmp_path) == ["model.skops"]
    assert saved.meta["format"] == "skops"
    assert saved.meta["trusted_types"] == [f"{MODULE}.LinearScorer"]
    assert saved.meta["class"] == f"{MODULE}.LinearScorer"
    loaded = flavor.load(tmp_path, saved.meta)
    assert same(loaded.predict(X), model.predict(X))
    assert same(loaded.predict(X.to_numpy()), model.predict(X))
    assert not loaded.has_proba
    assert loaded.predict_proba(X) is None


def test_object_with_probabilities(flavor: PythonFlavor, iris: tuple[pd.DataFrame, pd.Series],
                                   tmp_path: Path) -> None:
    X, _ = iris
    model = ThresholdClassifier()
    loaded = flavor.load(tmp_path, flavor.save(model, tmp_path).meta)
    assert loaded.has_proba
    assert loaded.classes == ["no", "yes"]
    assert same(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X.to_numpy()), model.predict_proba(X))


@pytest.mark.parametrize("attr", ["LinearScorer", "MODEL_INSTANCE"])
def test_import_path(flavor: PythonFlavor, iris: tuple[pd.DataFrame, pd.Series],
                     tmp_path: Path, attr: str) -> None:
    X, _ = iris
    target = f"{MODULE}:{attr}"
    assert flavor.can_save(target)
    saved = flavor.save(target, tmp_path)
    assert saved.meta == {"format": "import", "target": target}
    assert entries(tmp_path) == []
    loaded = flavor.load(tmp_path, saved.meta)
    assert same(loaded.predict(X), LinearScorer().predict(X))
    assert same(loaded.predict(X.to_numpy()), LinearScorer().predict(X))


@pytest.mark.parametrize(
    "target", ["no_colon", "a:b:c", "../evil:x", "pkg.mod:", ":attr", "pkg..mod:x", "p m:x"],
)
def test_malformed_import_path(flavor: PythonFlavor, tmp_path: Path, target: str) -> None:
    assert not flavor.can_save(target)
    with pytest.raises(InvalidInputError, match=re.escape("package.module:attr")):
        flavor.save(target, tmp_path)


@pytest.mark.parametrize(
    ("target", "message"),
    [("modelhost_no_such_module:Model", "ModuleNotFoundError"),
     (f"{MODULE}:Missing", "AttributeError"),
     (f"{MODULE}:not_a_model", "has no predict")],
)
def test_import_path_must_import_and_predict(flavor: PythonFlavor, tmp_path: Path,
                                             target: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as info:
        flavor.save(target, tmp_path)
    assert_no_path(info.value.message, tmp_path)
    with pytest.raises(ModelLoadError, match=message):
        flavor.load(tmp_path, {"format": "import", "target": target})


def test_object_skops_cannot_read_back_suggests_import_path(flavor: PythonFlavor,
                                                            tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="import path") as info:
        flavor.save(WithLambda(), tmp_path)
    assert f"'{MODULE}:WithLambda'" in info.value.message
    assert entries(tmp_path) == []


def test_class_defined_in_main_is_refused(flavor: PythonFlavor, tmp_path: Path) -> None:
    scripted: Any = type("Scripted", (), {"__module__": "__main__",
                                          "predict": lambda self, x: np.zeros(len(x))})
    with pytest.raises(InvalidInputError, match="__main__"):
        flavor.save(scripted(), tmp_path)
    assert entries(tmp_path) == []


def test_object_without_predict(flavor: PythonFlavor, tmp_path: Path) -> None:
    assert not flavor.can_save(object())
    with pytest.raises(InvalidInputError, match="predict"):
        flavor.save(object(), tmp_path)


def test_import_skops_file_needs_trust_for_custom_classes(
    flavor: PythonFlavor, iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path,
) -> None:
    X, _ = iris
    src = tmp_path / "scorer.skops"
    skops.io.dump(LinearScorer(), src)
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError, match="LinearScorer"):
        flavor.import_path(src, dest)
    assert entries(dest) == []
    saved = flavor.import_path(src, dest, trust_pickle=True)
    assert saved.meta["class"] == f"{MODULE}.LinearScorer"
    assert same(flavor.load(dest, saved.meta).predict(X), LinearScorer().predict(X))


def test_import_accepts_only_skops_files(flavor: PythonFlavor, tmp_path: Path) -> None:
    src = tmp_path / "model.pkl"
    src.write_bytes(b"")
    with pytest.raises(InvalidInputError, match=re.escape("imports .skops files")):
        flavor.import_path(src, tmp_path / "dest", trust_pickle=True)


def test_load_checks_meta(flavor: PythonFlavor, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown stored format"):
        flavor.load(tmp_path, {"format": "pickle"})
    with pytest.raises(ModelLoadError, match="no import path"):
        flavor.load(tmp_path, {"format": "import"})

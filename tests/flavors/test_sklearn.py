"""The sklearn flavor: skops by default, pickles only with trust."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modelhost.errors import (
    InvalidInputError,
    ModelLoadError,
    PathEscapeError,
    UntrustedArtifactError,
)
from modelhost.flavors import get_flavor
from modelhost.flavors.sklearn import SklearnFlavor

from .custom_models import LinearScorer, MajorityClassifier, PatternHolder
from .helpers import assert_no_path, entries, same

TREE = "sklearn.tree._tree.Tree"


@pytest.fixture
def flavor() -> SklearnFlavor:
    flavor = get_flavor("sklearn")
    assert isinstance(flavor, SklearnFlavor)
    return flavor


def test_classifier_round_trip(flavor: SklearnFlavor, forest: RandomForestClassifier,
                               iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    X, _ = iris
    saved = flavor.save(forest, tmp_path)
    assert entries(tmp_path) == ["model.skops"]
    assert saved.meta["format"] == "skops"
    assert saved.meta["file"] == "model.skops"
    assert saved.meta["trusted_types"] == [TREE]  # the registrant's own object: trusted
    assert saved.meta["sklearn_version"]
    assert saved.signature is None
    assert saved.input_example is None

    loaded = flavor.load(tmp_path, saved.meta)
    expected = forest.predict(X)
    assert same(loaded.predict(X), expected)
    assert same(loaded.predict(X.to_numpy()), expected)  # no feature-name warning either
    assert same(loaded.predict({c: X[c].to_numpy() for c in X.columns}), expected)
    assert same(loaded.predict(X[list(reversed(X.columns))]), expected)
    assert loaded.has_proba
    assert loaded.classes == [0, 1, 2]
    proba = loaded.predict_proba(X.to_numpy())
    assert proba is not None
    np.testing.assert_allclose(proba, forest.predict_proba(X))


def test_regressor_has_no_probabilities(flavor: SklearnFlavor, regressor: RandomForestRegressor,
                                        diabetes: tuple[pd.DataFrame, pd.Series],
                                        tmp_path: Path) -> None:
    X, _ = diabetes
    loaded = flavor.load(tmp_path, flavor.save(regressor, tmp_path).meta)
    np.testing.assert_allclose(loaded.predict(X), regressor.predict(X))
    np.testing.assert_allclose(loaded.predict(X.to_numpy()), regressor.predict(X))
    assert not loaded.has_proba
    assert loaded.predict_proba(X) is None
    assert loaded.classes is None


def test_pipeline_fitted_on_arrays_accepts_a_dataframe(
    flavor: SklearnFlavor, logistic: Pipeline, cancer: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    X, _ = cancer
    saved = flavor.save(logistic, tmp_path)
    assert saved.meta["trusted_types"] == []
    loaded = flavor.load(tmp_path, saved.meta)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    assert same(loaded.predict(frame), logistic.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), logistic.predict_proba(X))


def test_save_refuses_what_is_not_an_estimator(flavor: SklearnFlavor, tmp_path: Path) -> None:
    assert not flavor.can_save(LinearScorer())
    with pytest.raises(InvalidInputError, match="python flavor"):
        flavor.save(LinearScorer(), tmp_path)
    assert entries(tmp_path) == []


def test_save_refuses_what_skops_cannot_read_back(flavor: SklearnFlavor, tmp_path: Path) -> None:
    model = PatternHolder("a+").fit([[0]])
    with pytest.raises(InvalidInputError, match="skops cannot save this PatternHolder"):
        flavor.save(model, tmp_path)
    assert entries(tmp_path) == []


# --- import of .skops files ------------------------------------------------------------


def test_import_safe_skops_file(flavor: SklearnFlavor, logistic: Pipeline,
                                cancer: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    X, _ = cancer
    src = tmp_path / "in.skops"
    skops.io.dump(logistic, src)
    dest = tmp_path / "dest"
    saved = flavor.import_path(src, dest)
    assert entries(dest) == ["model.skops"]
    assert saved.meta["trusted_types"] == []
    loaded = flavor.load(dest, saved.meta)
    assert same(loaded.predict(X), logistic.predict(X))


def test_import_skops_with_unsafe_types_needs_trust(
    flavor: SklearnFlavor, forest: RandomForestClassifier,
    iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path,
) -> None:
    src = tmp_path / "forest.skops"
    skops.io.dump(forest, src)
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError, match=re.escape(TREE)):
        flavor.import_path(src, dest)
    assert entries(dest) == []

    saved = flavor.import_path(src, dest, trust_pickle=True)
    assert saved.meta["trusted_types"] == [TREE]
    loaded = flavor.load(dest, saved.meta)  # trusted at import: no flag needed any more
    assert same(loaded.predict(iris[0]), forest.predict(iris[0]))


def test_import_skops_with_a_custom_class_is_refused_without_trust(
    flavor: SklearnFlavor, iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path,
) -> None:
    X, y = iris
    model = make_pipeline(StandardScaler(), MajorityClassifier()).fit(X, y)
    src = tmp_path / "custom.skops"
    skops.io.dump(model, src)
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError, match="MajorityClassifier") as info:
        flavor.import_path(src, dest)
    assert "types that skops does not trust by default" in info.value.message
    assert entries(dest) == []
    saved = flavor.import_path(src, dest, trust_pickle=True)
    assert same(flavor.load(dest, saved.meta).predict(X), model.predict(X))


def test_import_garbage_skops_file(flavor: SklearnFlavor, tmp_path: Path) -> None:
    src = tmp_path / "broken.skops"
    src.write_bytes(b"\x00garbage, not a zip file")
    dest = tmp_path / "dest"
    with pytest.raises(ModelLoadError) as info:
        flavor.import_path(src, dest, trust_pickle=True)
    assert "could not be loaded" in info.value.message
    assert_no_path(info.value.message, src, tmp_path)
    assert entries(dest) == []


def test_import_skops_holding_no_estimator(flavor: SklearnFlavor, tmp_path: Path) -> None:
    src = tmp_path / "dict.skops"
    skops.io.dump({"weights": [1, 2]}, src)
    with pytest.raises(ModelLoadError, match="not a scikit-learn estimator"):
        flavor.import_path(src, tmp_path / "dest")
    assert entries(tmp_path / "dest") == []


# --- import of pickles -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".joblib", ".pkl", ".pickle"])
def test_pickle_refused_without_trust(flavor: SklearnFlavor, forest: RandomForestClassifier,
                                      tmp_path: Path, suffix: str) -> None:
    src = tmp_path / f"model{suffix}"
    joblib.dump(forest, src)
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError, match="a pickle file"):
        flavor.import_path(src, dest)
    assert entries(dest) == []


def test_trusted_joblib_is_resaved_with_skops(flavor: SklearnFlavor,
                                              forest: RandomForestClassifier,
                                              iris: tuple[pd.DataFrame, pd.Series],
                                              tmp_path: Path) -> None:
    src = tmp_path / "model.joblib"
    joblib.dump(forest, src)
    dest = tmp_path / "dest"
    saved = flavor.import_path(src, dest, trust_pickle=True)
    assert entries(dest) == ["model.skops"]  # the stored artifact needs no pickle
    assert saved.meta["format"] == "skops"
    assert saved.meta["trusted_types"] == [TREE]
    loaded = flavor.load(dest, saved.meta)
    X = iris[0]
    assert same(loaded.predict(X), forest.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), forest.predict_proba(X))


def test_trusted_plain_pickle_is_resaved_with_skops(flavor: SklearnFlavor, logistic: Pipeline,
                                                    cancer: tuple[np.ndarray, np.ndarray],
                                                    tmp_path: Path) -> None:
    src = tmp_path / "model.pkl"
    src.write_bytes(pickle.dumps(logistic))
    saved = flavor.import_path(src, tmp_path / "dest", trust_pickle=True)
    assert saved.meta["format"] == "skops"
    loaded = flavor.load(tmp_path / "dest", saved.meta)
    assert same(loaded.predict(cancer[0]), logistic.predict(cancer[0]))


def test_trusted_pickle_skops_cannot_hold_is_kept(flavor: SklearnFlavor, tmp_path: Path) -> None:
    model = PatternHolder("a+").fit([[0], [1]])
    src = tmp_path / "holder.pkl"
    src.write_bytes(pickle.dumps(model))
    dest = tmp_path / "dest"
    saved = flavor.import_path(src, dest, trust_pickle=True)
    assert entries(dest) == ["model.pkl"]
    assert saved.meta == {"format": "pickle", "file": "model.pkl", "pickle_trusted": True,
                          "sklearn_version": saved.meta["sklearn_version"]}
    assert same(flavor.load(dest, saved.meta).predict([[1], [2]]), [0.0, 0.0])

    untrusted_meta = {**saved.meta, "pickle_trusted": False}
    with pytest.raises(UntrustedArtifactError):
        flavor.load(dest, untrusted_meta)
    assert same(flavor.load(dest, untrusted_meta, trust_pickle=True).predict([[1]]), [0.0])


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_malicious_pickle_never_runs_without_trust(
    flavor: SklearnFlavor, payload_pickle: tuple[bytes, Path], tmp_path: Path, suffix: str,
) -> None:
    data, marker = payload_pickle
    src = tmp_path / f"model{suffix}"
    src.write_bytes(data)
    dest = tmp_path / "dest"
    with pytest.raises(UntrustedArtifactError):
        flavor.import_path(src, dest)
    assert not marker.exists()
    assert entries(dest) == []


def test_malicious_pickle_payload_is_real(flavor: SklearnFlavor,
                                          payload_pickle: tuple[bytes, Path],
                                          tmp_path: Path) -> None:
    """The control for the test above: with trust the payload runs, then is refused."""
    data, marker = payload_pickle
    src = tmp_path / "model.pkl"
    src.write_bytes(data)
    with pytest.raises(ModelLoadError, match="NoneType, not a scikit-learn estimator") as info:
        flavor.import_path(src, tmp_path / "dest", trust_pickle=True)
    assert marker.exists()
    assert_no_path(info.value.message, src, tmp_path)
    assert entries(tmp_path / "dest") == []


def test_pickle_disguised_as_skops_never_runs(flavor: SklearnFlavor,
                                              payload_pickle: tuple[bytes, Path],
                                              tmp_path: Path) -> None:
    data, marker = payload_pickle
    src = tmp_path / "model.skops"
    src.write_bytes(data)
    with pytest.raises(ModelLoadError) as info:
        flavor.import_path(src, tmp_path / "dest", trust_pickle=True)
    assert not marker.exists()
    assert_no_path(info.value.message, src, tmp_path)


def test_other_suffixes_are_refused(flavor: SklearnFlavor, tmp_path: Path) -> None:
    src = tmp_path / "model.h5"
    src.write_bytes(b"")
    with pytest.raises(InvalidInputError, match=re.escape("'model.h5'")):
        flavor.import_path(src, tmp_path / "dest", trust_pickle=True)


# --- load ------------------------------------------------------------------------------


def test_corrupted_stored_file(flavor: SklearnFlavor, forest: RandomForestClassifier,
                               tmp_path: Path) -> None:
    saved = flavor.save(forest, tmp_path)
    (tmp_path / "model.skops").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelLoadError) as info:
        flavor.load(tmp_path, saved.meta)
    assert_no_path(info.value.message, tmp_path)


def test_load_checks_meta(flavor: SklearnFlavor, forest: RandomForestClassifier,
                          tmp_path: Path) -> None:
    meta = flavor.save(forest, tmp_path).meta
    with pytest.raises(ModelLoadError, match="Untrusted types"):
        flavor.load(tmp_path, {**meta, "trusted_types": []})
    with pytest.raises(PathEscapeError):
        flavor.load(tmp_path, {**meta, "file": "../model.skops"})
    with pytest.raises(PathEscapeError):
        flavor.load(tmp_path, {**meta, "file": "/etc/passwd"})
    with pytest.raises(ModelLoadError, match="missing"):
        flavor.load(tmp_path, {**meta, "file": "other.skops"})
    with pytest.raises(ModelLoadError, match="unknown stored format 'h5'"):
        flavor.load(tmp_path, {**meta, "format": "h5"})

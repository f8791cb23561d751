"""The onnx flavor and convert_sklearn: onnxruntime on the CPU, no trust needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.pipeline import Pipeline

from modelhost.errors import InvalidInputError, ModelLoadError
from modelhost.flavors import get_flavor
from modelhost.flavors.onnx import OnnxFlavor, convert_sklearn

from .custom_models import LinearScorer
from .helpers import assert_no_path, entries, same


@pytest.fixture
def flavor() -> OnnxFlavor:
    flavor = get_flavor("onnx")
    assert isinstance(flavor, OnnxFlavor)
    return flavor


def _two_input_sum() -> onnx.ModelProto:
    """A graph with two inputs, a and b, each (n, 1), answering a + b."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1])
    out = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"])], "sum", [a, b],
                              [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_classifier_round_trip(flavor: OnnxFlavor, forest: RandomForestClassifier,
                               iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    X, _ = iris
    proto = convert_sklearn(forest, X)
    assert [i.name for i in proto.graph.input] == ["X"]
    assert flavor.can_save(proto)
    saved = flavor.save(proto, tmp_path)
    assert entries(tmp_path) == ["model.onnx"]
    assert saved.meta["format"] == "onnx"
    assert saved.meta["intra_op_num_threads"] == 1
    assert saved.meta["classes"] == [0, 1, 2]
    assert saved.meta["inputs"] == [{"name": "X", "type": "tensor(float)", "shape": [None, 4]}]

    loaded = flavor.load(tmp_path, saved.meta)
    assert same(loaded.predict(X), forest.predict(X))
    assert same(loaded.predict(X.to_numpy()), forest.predict(X))
    assert same(loaded.predict({"X": X.to_numpy()}), forest.predict(X))
    assert loaded.has_proba
    assert loaded.classes == [0, 1, 2]
    proba = loaded.predict_proba(X)
    assert proba is not None
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba, forest.predict_proba(X), atol=1e-4)


def test_regressor_round_trip(flavor: OnnxFlavor, regressor: RandomForestRegressor,
                              diabetes: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    X, _ = diabetes
    loaded = flavor.load(tmp_path, flavor.save(convert_sklearn(regressor, X), tmp_path).meta)
    predictions = loaded.predict(X.to_numpy())
    assert predictions.shape == (len(X),)
    np.testing.assert_allclose(predictions, regressor.predict(X), rtol=1e-4)
    np.testing.assert_allclose(loaded.predict(X), regressor.predict(X), rtol=1e-4)
    assert not loaded.has_proba
    assert loaded.predict_proba(X) is None


def test_import_converted_pipeline(flavor: OnnxFlavor, logistic: Pipeline,
                                   cancer: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    X, _ = cancer
    src = tmp_path / "pipeline.onnx"
    onnx.save_model(convert_sklearn(logistic, X), src)
    assert flavor.detect(src)
    dest = tmp_path / "dest"
    saved = flavor.import_path(src, dest)
    assert entries(dest) == ["model.onnx"]
    loaded = flavor.load(dest, saved.meta)
    assert same(loaded.predict(X), logistic.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), logistic.predict_proba(X), atol=1e-4)
    assert loaded.classes == [0, 1]


def test_zipmap_probabilities_become_an_array(flavor: OnnxFlavor,
                                              forest: RandomForestClassifier,
                                              iris: tuple[pd.DataFrame, pd.Series],
                                              tmp_path: Path) -> None:
    X, _ = iris
    proto = to_onnx(forest, X.to_numpy(dtype=np.float32)[:1])  # skl2onnx's default: ZipMap
    assert proto.graph.output[1].name == "output_probability"
    saved = flavor.save(proto, tmp_path)
    assert saved.meta["classes"] == [0, 1, 2]  # read from the graph
    loaded = flavor.load(tmp_path, saved.meta)
    np.testing.assert_allclose(loaded.predict_proba(X), forest.predict_proba(X), atol=1e-4)
    assert same(loaded.predict(X), forest.predict(X))


def test_several_inputs_are_fed_by_name(flavor: OnnxFlavor, tmp_path: Path) -> None:
    loaded = flavor.load(tmp_path, flavor.save(_two_input_sum(), tmp_path).meta)
    expected = [11.0, 22.0]
    frame = pd.DataFrame({"b": [10, 20], "a": [1, 2]})
    assert same(loaded.predict(frame), expected)
    assert same(loaded.predict({"a": np.array([1.0, 2.0]), "b": np.array([10.0, 20.0])}),
                expected)
    assert same(loaded.predict(np.array([[1.0, 10.0], [2.0, 20.0]])), expected)
    assert not loaded.has_proba
    with pytest.raises(InvalidInputError, match="missing 'b'"):
        loaded.predict(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(InvalidInputError, match="2 inputs"):
        loaded.predict(np.ones((2, 3)))


def test_bad_inputs_are_invalid_input(flavor: OnnxFlavor, forest: RandomForestClassifier,
                                      iris: tuple[pd.DataFrame, pd.Series],
                                      tmp_path: Path) -> None:
    loaded = flavor.load(tmp_path, flavor.save(convert_sklearn(forest, iris[0]), tmp_path).meta)
    with pytest.raises(InvalidInputError, match="2-D batch"):
        loaded.predict(np.ones(4))
    with pytest.raises(InvalidInputError, match="rejected the input"):
        loaded.predict(np.ones((2, 3)))
    with pytest.raises(InvalidInputError, match="needs float32"):
        loaded.predict(np.array([["a", "b", "c", "d"]]))


def test_threads_are_an_option_recorded_in_meta(forest: RandomForestClassifier,
                                                iris: tuple[pd.DataFrame, pd.Series],
                                                tmp_path: Path) -> None:
    flavor = OnnxFlavor(intra_op_num_threads=2)
    saved = flavor.save(convert_sklearn(forest, iris[0]), tmp_path)
    assert saved.meta["intra_op_num_threads"] == 2
    assert same(flavor.load(tmp_path, saved.meta).predict(iris[0]), forest.predict(iris[0]))
    with pytest.raises(ModelLoadError, match="intra_op_num_threads"):
        flavor.load(tmp_path, {**saved.meta, "intra_op_num_threads": "many"})


def test_save_refuses_other_objects(flavor: OnnxFlavor, tmp_path: Path) -> None:
    assert not flavor.can_save(LinearScorer())
    with pytest.raises(InvalidInputError, match="convert_sklearn"):
        flavor.save(LinearScorer(), tmp_path)
    assert entries(tmp_path) == []


def test_garbage_onnx_file(flavor: OnnxFlavor, tmp_path: Path) -> None:
    src = tmp_path / "broken.onnx"
    src.write_bytes(b"\x08\x07 this is not a graph")
    dest = tmp_path / "dest"
    with pytest.raises(ModelLoadError) as info:
        flavor.import_path(src, dest)
    assert info.value.message.startswith("the ONNX model could not be loaded")
    assert_no_path(info.value.message, src, tmp_path)
    assert entries(dest) == []


def test_pickle_disguised_as_onnx_never_runs(flavor: OnnxFlavor,
                                             payload_pickle: tuple[bytes, Path],
                                             tmp_path: Path) -> None:
    data, marker = payload_pickle
    src = tmp_path / "model.onnx"
    src.write_bytes(data)
    with pytest.raises(ModelLoadError):
        flavor.import_path(src, tmp_path / "dest", trust_pickle=True)
    assert not marker.exists()


def test_corrupted_stored_file(flavor: OnnxFlavor, forest: RandomForestClassifier,
                               iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> None:
    saved = flavor.save(convert_sklearn(forest, iris[0]), tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError) as info:
        flavor.load(tmp_path, saved.meta)
    assert_no_path(info.value.message, tmp_path)


def test_convert_sklearn_needs_numbers(forest: RandomForestClassifier) -> None:
    with pytest.raises(InvalidInputError, match="non-numeric"):
        convert_sklearn(forest, pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(InvalidInputError, match="2-D sample"):
        convert_sklearn(forest, np.ones(4))


def test_convert_sklearn_needs_an_estimator(iris: tuple[pd.DataFrame, pd.Series]) -> None:
    with pytest.raises(InvalidInputError, match="estimators, not LinearScorer"):
        convert_sklearn(LinearScorer(), iris[0])

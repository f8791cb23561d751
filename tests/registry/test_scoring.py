"""The scoring kernel (registry/scoring.py): input conversion, model call, output checks,
with tiny real models registered and loaded through the registry."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from tests.conftest import TODAY
from tests.fixtures_models import iris, iris_example, iris_model

from modelhost import Client
from modelhost.errors import (
    InvalidInputError,
    PredictionFailedError,
    SignatureViolationError,
    VersionSunsetError,
)
from modelhost.registry import LoadedVersion, Scorer
from modelhost.registry.scoring import (
    NONFINITE_MESSAGE,
    check_finite,
    check_sunset,
    nonfinite_rows,
)

BIG = 1.7976931348623157e308  # the largest finite double
# A linear model fed the largest doubles overflows to infinity (numpy warns about it,
# which this test suite would otherwise turn into an error).
overflows = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def _width_to_length() -> LinearRegression:
    """petal_length from petal_width: a slope above 1, so that BIG overflows."""
    X, _ = iris()
    return LinearRegression().fit(X[["petal_width"]], X["petal_length"])


@pytest.fixture
def length(sqlite_client: Client) -> LoadedVersion:
    """A signed regression: petal_width in, petal_length out."""
    X, _ = iris()
    sqlite_client.registry.register(_width_to_length(), name="length",
                                    input_example=X[["petal_width"]].head(3))
    return sqlite_client.registry.load("length", "latest")


@pytest.fixture
def unsigned(sqlite_client: Client) -> LoadedVersion:
    """The iris classifier registered without input example: no signature."""
    sqlite_client.registry.register(iris_model(), name="iris")
    return sqlite_client.registry.load("iris", "latest")


# --- prepare -------------------------------------------------------------------------------


def test_prepare_with_a_signature_validates_and_converts(length: LoadedVersion) -> None:
    scorer = Scorer(length.version, length.model)
    assert scorer.validator is not None and scorer.as_array is False
    frame = scorer.prepare([{"petal_width": 0.2}, {"petal_width": 2}])
    assert isinstance(frame, pd.DataFrame)
    assert frame["petal_width"].tolist() == [0.2, 2.0]
    array = Scorer(length.version, length.model, as_array=True).prepare(
        {"petal_width": [0.2, 1.5]})
    assert isinstance(array, np.ndarray) and array.tolist() == [[0.2], [1.5]]
    with pytest.raises(SignatureViolationError, match="expected double, got string"):
        scorer.prepare([{"petal_width": "wide"}])
    # numeric_rows_only concerns versions without a signature only.
    assert isinstance(scorer.prepare([{"petal_width": 0.2}], numeric_rows_only=True),
                      pd.DataFrame)


def test_prepare_without_a_signature_passes_inputs_as_given(unsigned: LoadedVersion) -> None:
    scorer = Scorer(unsigned.version, unsigned.model)
    assert scorer.validator is None
    frame = iris_example(rows=2)
    assert scorer.prepare(frame) is frame
    records = scorer.prepare([{"b": 1.0, "a": 2.0}])
    assert isinstance(records, pd.DataFrame) and list(records.columns) == ["b", "a"]
    rows = scorer.prepare([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(rows, np.ndarray) and rows.shape == (2, 2)
    with pytest.raises(InvalidInputError, match="ragged nested list"):
        scorer.prepare([[1.0, 2.0], [3.0]])


def test_prepare_numeric_rows_only_gives_a_float_matrix(unsigned: LoadedVersion) -> None:
    scorer = Scorer(unsigned.version, unsigned.model)
    array = scorer.prepare([[1, 2], [3, 4]], numeric_rows_only=True)
    assert array.dtype == np.float64 and array.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(InvalidInputError) as records:
        scorer.prepare([{"a": 1.0}], numeric_rows_only=True)
    assert str(records.value) == ("this version has no signature, so 'inputs' must be a list "
                                  "of rows of numbers")
    with pytest.raises(InvalidInputError) as flat:
        scorer.prepare([1.0, 2.0], numeric_rows_only=True)
    assert str(flat.value) == "'inputs' must be a list of rows of numbers"


def test_a_given_validator_is_used_as_is(length: LoadedVersion,
                                         unsigned: LoadedVersion) -> None:
    scorer = Scorer(length.version, length.model)
    reused = Scorer(unsigned.version, unsigned.model, validator=scorer.validator)
    assert reused.validator is scorer.validator
    assert reused.prepare([{"petal_width": 1.0}])["petal_width"].tolist() == [1.0]


# --- run and the output checks -------------------------------------------------------------


def test_run_on_finite_outputs_has_no_mask(length: LoadedVersion) -> None:
    scorer = Scorer(length.version, length.model)
    predictions, probabilities, nonfinite = scorer.run(
        scorer.prepare([{"petal_width": 0.2}, {"petal_width": 2.0}]))
    assert isinstance(predictions, np.ndarray) and predictions.shape == (2,)
    assert predictions.tolist() == pytest.approx(
        _width_to_length().predict(pd.DataFrame({"petal_width": [0.2, 2.0]})).tolist())
    assert probabilities is None and nonfinite is None


@overflows
def test_run_marks_the_rows_whose_outputs_overflow(length: LoadedVersion) -> None:
    scorer = Scorer(length.version, length.model, as_array=True)
    inputs = scorer.prepare({"petal_width": [0.2, BIG, 1.0, -BIG]})
    predictions, _, nonfinite = scorer.run(inputs)
    assert np.isinf(predictions).tolist() == [False, True, False, True]
    assert nonfinite is not None and nonfinite.tolist() == [False, True, False, True]


def test_run_gives_probabilities_and_raises_what_the_model_raises(
        unsigned: LoadedVersion) -> None:
    scorer = Scorer(unsigned.version, unsigned.model)
    predictions, probabilities, nonfinite = scorer.run(iris_example(rows=3))
    assert predictions.tolist() == iris_model().predict(iris_example(rows=3)).tolist()
    assert probabilities.shape == (3, 3) and nonfinite is None
    with pytest.raises(ValueError, match="feature names"):
        scorer.run(pd.DataFrame({"a": [1.0]}))


def test_nonfinite_rows_looks_at_float_and_complex_arrays_only() -> None:
    assert nonfinite_rows(np.array([1.0, 2.0]), None) is None
    assert nonfinite_rows(np.array(["a", "b"]), [float("nan")], np.array(np.nan)) is None
    mask = nonfinite_rows(np.array([1.0, np.nan, 3.0]),
                          np.array([[0.5, 0.5], [0.5, 0.5], [np.inf, 0.0]]))
    assert mask is not None and mask.tolist() == [False, True, True]
    complex_mask = nonfinite_rows(np.array([1 + 1j, complex(np.inf, 0)]))
    assert complex_mask is not None and complex_mask.tolist() == [False, True]


def test_check_finite_refuses_any_marked_row() -> None:
    check_finite(None)
    check_finite(np.array([False, False]))
    with pytest.raises(InvalidInputError) as info:
        check_finite(np.array([False, True]))
    assert str(info.value) == NONFINITE_MESSAGE
    assert info.value.code == "invalid_input"


def test_check_sunset_answers_on_the_sunset_day_and_refuses_the_day_after(
        length: LoadedVersion) -> None:
    check_sunset(length.version, TODAY)  # no sunset at all
    retiring = dataclasses.replace(length.version, sunset=TODAY)
    check_sunset(retiring, TODAY - dt.timedelta(days=1))
    check_sunset(retiring, TODAY)
    with pytest.raises(VersionSunsetError) as info:
        check_sunset(retiring, TODAY + dt.timedelta(days=1))
    assert str(info.value) == (f"length {retiring.version} reached its sunset on "
                               f"{TODAY.isoformat()} and is retired")
    assert info.value.code == "gone"


# --- score: the one-shot path --------------------------------------------------------------


def test_score_end_to_end(length: LoadedVersion, unsigned: LoadedVersion) -> None:
    predictions, probabilities = Scorer(length.version, length.model).score(
        {"petal_width": [0.2, 2.0]}, today=TODAY)
    assert predictions.shape == (2,) and probabilities is None
    predictions, probabilities = Scorer(unsigned.version, unsigned.model).score(
        iris_example(rows=2).to_dict(orient="records"), today=TODAY)
    assert predictions.tolist() == iris_model().predict(iris_example(rows=2)).tolist()
    assert probabilities is not None and probabilities.shape == (2, 3)


def test_score_reports_a_failing_model_with_a_hint_when_unsigned(
        unsigned: LoadedVersion) -> None:
    with pytest.raises(PredictionFailedError) as info:
        Scorer(unsigned.version, unsigned.model).score([{"a": 1.0}], today=TODAY)
    message = str(info.value)
    assert message.startswith("the model failed to predict: it raised ValueError")
    assert "has no signature" in message and "--input-example" in message
    assert isinstance(info.value.__cause__, ValueError)


@overflows
def test_score_refuses_overflowing_outputs(length: LoadedVersion) -> None:
    scorer = Scorer(length.version, length.model)
    with pytest.raises(InvalidInputError) as info:
        scorer.score([{"petal_width": 1.0}, {"petal_width": BIG}], today=TODAY)
    assert str(info.value) == NONFINITE_MESSAGE


def test_score_refuses_a_version_past_its_sunset_before_the_model_runs(
        length: LoadedVersion) -> None:
    retired = Scorer(dataclasses.replace(length.version, sunset=TODAY), length.model)
    assert retired.score({"petal_width": [1.0]}, today=TODAY)[0].shape == (1,)
    with pytest.raises(VersionSunsetError):
        # Bad inputs too: a retired version is refused before anything else.
        retired.score([{"petal_width": "wide"}], today=TODAY + dt.timedelta(days=1))


# --- LoadedVersion.predict scores through the kernel ---------------------------------------


def test_loaded_version_predict_has_the_sunset_check_with_the_registry_clock(
        sqlite_client: Client, length: LoadedVersion) -> None:
    registry = sqlite_client.registry
    registry.deprecate("length", length.version.version, sunset=TODAY)
    loaded = registry.load("length", length.version.version)
    assert loaded.today() == TODAY  # the registry's clock, not the machine's
    assert len(loaded.predict({"petal_width": [1.0]}).predictions) == 1
    tomorrow = dataclasses.replace(loaded, today=lambda: TODAY + dt.timedelta(days=1))
    with pytest.raises(VersionSunsetError, match="reached its sunset"):
        tomorrow.predict({"petal_width": [1.0]})


@overflows
def test_loaded_version_predict_refuses_overflowing_outputs(length: LoadedVersion) -> None:
    with pytest.raises(InvalidInputError) as info:
        length.predict({"petal_width": [BIG]})
    assert str(info.value) == NONFINITE_MESSAGE

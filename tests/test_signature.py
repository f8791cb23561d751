"""modelhost.signature: inference, the semver rule, the request validator, input examples."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_iris

from modelhost.entities import Bump, ColumnSpec, ColumnType, Signature, TensorSpec
from modelhost.errors import InvalidInputError, SignatureViolationError
from modelhost.signature import (
    InputValidator,
    compare_signatures,
    example_from_jsonable,
    infer_signature,
    to_jsonable,
)

T = ColumnType


def col(name: str, type_: ColumnType = T.DOUBLE, *, required: bool = True,
        nullable: bool = False) -> ColumnSpec:
    return ColumnSpec(name, type_, required=required, nullable=nullable)


def sig(*specs: ColumnSpec | TensorSpec, outputs: tuple[Any, ...] = ()) -> Signature:
    return Signature(inputs=tuple(specs), outputs=outputs)


def problems(validator: InputValidator, payload: Any) -> list[dict[str, Any]]:
    with pytest.raises(SignatureViolationError) as caught:
        validator.validate(payload)
    return caught.value.details


def messages(validator: InputValidator, payload: Any) -> list[str]:
    return [p["message"] for p in problems(validator, payload)]


# --- infer_signature ------------------------------------------------------------------


def test_infer_maps_every_dataframe_dtype_in_column_order() -> None:
    frame = pd.DataFrame({
        "f64": np.array([1.5, 2.5]),
        "f32": np.array([1.5, 2.5], dtype=np.float32),
        "i64": np.array([1, 2]),
        "nullable_i64": pd.array([1, None], dtype="Int64"),
        "i32": np.array([1, 2], dtype=np.int32),
        "i16": np.array([1, 2], dtype=np.int16),
        "i8": np.array([1, 2], dtype=np.int8),
        "u8": np.array([1, 2], dtype=np.uint8),
        "u16": np.array([1, 2], dtype=np.uint16),
        "u64": np.array([1, 2], dtype=np.uint64),
        "flag": np.array([True, False]),
        "nullable_flag": pd.array([True, None], dtype="boolean"),
        "text_object": pd.Series(["a", "b"], dtype=object),
        "text_str": pd.Series(["a", None], dtype="str"),
        "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        "when_s": np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[s]"),
        "when_tz": pd.to_datetime(["2024-01-01", None]).tz_localize("Europe/Paris"),
        "obj_bool": pd.Series([True, None], dtype=object),
        "obj_int": pd.Series([1, 2], dtype=object),
        "obj_float": pd.Series([1.5, None], dtype=object),
    })
    inputs = infer_signature(frame).inputs
    assert [s.name for s in inputs] == list(frame.columns)
    assert all(isinstance(s, ColumnSpec) and s.required for s in inputs)
    got = {s.name: (s.type, s.nullable) for s in inputs if isinstance(s, ColumnSpec)}
    assert got == {
        "f64": (T.DOUBLE, False), "f32": (T.FLOAT, False), "i64": (T.LONG, False),
        "nullable_i64": (T.LONG, True), "i32": (T.INTEGER, False), "i16": (T.INTEGER, False),
        "i8": (T.INTEGER, False), "u8": (T.INTEGER, False), "u16": (T.INTEGER, False),
        "u64": (T.LONG, False), "flag": (T.BOOLEAN, False),
        "nullable_flag": (T.BOOLEAN, True), "text_object": (T.STRING, False),
        "text_str": (T.STRING, True), "when": (T.DATETIME, False),
        "when_s": (T.DATETIME, False), "when_tz": (T.DATETIME, True),
        "obj_bool": (T.BOOLEAN, True), "obj_int": (T.LONG, False),
        "obj_float": (T.DOUBLE, True),
    }


def test_uint32_widens_to_long_because_it_does_not_fit_int32() -> None:
    frame = pd.DataFrame({"u32": np.array([4_000_000_000], dtype=np.uint32)})
    assert infer_signature(frame).inputs == (col("u32", T.LONG),)


def test_int_column_with_nan_becomes_nullable_double() -> None:
    frame = pd.DataFrame({"age": [31, None, 40]})
    assert infer_signature(frame).inputs == (col("age", T.DOUBLE, nullable=True),)


def test_categorical_column_takes_the_type_of_its_categories() -> None:
    frame = pd.DataFrame({"city": pd.Categorical(["paris", "rome", "paris"])})
    assert infer_signature(frame).inputs == (col("city", T.STRING),)


def test_dict_of_columns_and_list_of_records_infer_like_a_dataframe() -> None:
    expected = (col("age", T.LONG), col("city", T.STRING, nullable=True))
    assert infer_signature({"age": [1, 2], "city": ["a", None]}).inputs == expected
    records = [{"age": 1, "city": "a"}, {"age": 2}]
    assert infer_signature(records).inputs == expected


@pytest.mark.parametrize(("values", "what"), [
    (pd.Series([1, "a"], dtype=object), "mixed-integer values"),
    (pd.Series([None, None], dtype=object), "only missing values"),
    (pd.Series([dt.date(2024, 1, 1)], dtype=object), "date values"),
    (pd.Series(pd.to_timedelta([1, 2], unit="s")), "dtype timedelta64"),
    (pd.Series([1 + 2j]), "dtype complex128"),
])
def test_unsupported_columns_are_refused_by_name(values: Any, what: str) -> None:
    with pytest.raises(InvalidInputError, match=f"column 'bad' .*{what}"):
        infer_signature(pd.DataFrame({"ok": [1.0] * len(values), "bad": values}))


def test_frames_without_columns_or_with_repeated_names_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="no columns"):
        infer_signature(pd.DataFrame())
    with pytest.raises(InvalidInputError, match="repeats column names"):
        infer_signature(pd.DataFrame([[1, 2]], columns=["a", "a"]))


def test_sklearn_iris_and_breast_cancer_frames() -> None:
    iris = load_iris(as_frame=True)
    signature = infer_signature(iris.data, iris.target)
    assert [s.name for s in signature.inputs] == list(iris.data.columns)
    assert all(s == col(s.name) for s in signature.columns)
    assert signature.outputs == (TensorSpec("int64", (-1,)),)

    cancer = load_breast_cancer(as_frame=True)
    signature = infer_signature(cancer.frame)
    assert len(signature.inputs) == 31
    assert signature.columns[-1] == col("target", T.LONG)
    assert {c.type for c in signature.columns[:-1]} == {T.DOUBLE}
    # Every training row validates against the signature inferred from it.
    validated = InputValidator(signature).validate(to_jsonable(cancer.frame, max_rows=600))
    pd.testing.assert_frame_equal(validated, cancer.frame, check_column_type=False)


def test_numpy_arrays_become_tensors_with_a_free_batch_dimension() -> None:
    assert infer_signature(np.zeros((3, 4))).inputs == (TensorSpec("float64", (-1, 4)),)
    assert infer_signature(np.zeros(3, dtype=np.int32)).inputs == (TensorSpec("int32", (-1,)),)
    assert infer_signature(np.zeros((2, 3, 4), dtype=bool)).inputs == (
        TensorSpec("bool", (-1, 3, 4)),)
    # String tensors do not depend on the longest training string.
    assert infer_signature(np.array(["a", "bcd"])).inputs == (TensorSpec("str", (-1,)),)
    assert infer_signature([[1.0, 2.0]]).inputs == (TensorSpec("float64", (-1, 2)),)
    named = infer_signature({"image": np.zeros((2, 8, 8)), "meta": np.zeros((2, 3))})
    assert named.inputs == (TensorSpec("float64", (-1, 8, 8), "image"),
                            TensorSpec("float64", (-1, 3), "meta"))


@pytest.mark.parametrize("array", [
    np.array([{"a": 1}], dtype=object),
    np.array(["2024-01-01"], dtype="datetime64[D]"),
    np.array([b"x"]),
    np.zeros(2, dtype=complex),
    np.float64(1.0).reshape(()),
])
def test_unsupported_arrays_are_refused(array: Any) -> None:
    with pytest.raises(InvalidInputError):
        infer_signature(array)


def test_unsupported_inputs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="type str"):
        infer_signature("age")
    with pytest.raises(InvalidInputError, match="ragged"):
        infer_signature([[1, 2], [3]])
    with pytest.raises(InvalidInputError, match="not a table"):
        infer_signature({"a": [1, 2], "b": [1]})


def test_outputs_are_inferred_from_arrays_series_frames_and_lists() -> None:
    frame = pd.DataFrame({"x": [1.0]})
    assert infer_signature(frame).outputs == ()
    assert infer_signature(frame, np.array([0.5, 0.1])).outputs == (
        TensorSpec("float64", (-1,)),)
    assert infer_signature(frame, np.zeros((2, 3))).outputs == (TensorSpec("float64", (-1, 3)),)
    assert infer_signature(frame, pd.Series([1, 0])).outputs == (TensorSpec("int64", (-1,)),)
    assert infer_signature(frame, pd.Series(["yes", "no"])).outputs == (
        TensorSpec("str", (-1,)),)
    assert infer_signature(frame, np.array(["a", None], dtype=object)).outputs == (
        TensorSpec("str", (-1,)),)
    assert infer_signature(frame, ["a", "b"]).outputs == (TensorSpec("str", (-1,)),)
    assert infer_signature(frame, pd.DataFrame({"p": [0.1], "label": ["a"]})).outputs == (
        col("p"), col("label", T.STRING))


def test_mixed_object_output_arrays_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="dtype object"):
        infer_signature(pd.DataFrame({"x": [1.0]}), np.array(["a", 1], dtype=object))


# --- compare_signatures -----------------------------------------------------------------

BASE = sig(col("age", T.LONG), col("city", T.STRING, nullable=True),
           col("note", T.STRING, required=False), outputs=(col("score"),))


def with_inputs(*specs: ColumnSpec | TensorSpec) -> Signature:
    return Signature(inputs=tuple(specs), outputs=BASE.outputs)


@pytest.mark.parametrize(("new", "bump", "reason"), [
    (BASE, Bump.PATCH, "same contract"),
    (with_inputs(col("note", T.STRING, required=False), col("city", T.STRING, nullable=True),
                 col("age", T.LONG)), Bump.PATCH, "same contract"),
    (with_inputs(col("city", T.STRING, nullable=True), col("note", T.STRING, required=False)),
     Bump.MAJOR, "drops input column 'age'"),
    (with_inputs(col("age", T.DOUBLE), col("city", T.STRING, nullable=True),
                 col("note", T.STRING, required=False)),
     Bump.MAJOR, "changes type of input column 'age' from long to double"),
    (with_inputs(*BASE.inputs, col("zip", T.STRING)),
     Bump.MAJOR, "adds required input column 'zip'"),
    (with_inputs(*BASE.inputs, col("zip", T.STRING, required=False)),
     Bump.MINOR, "adds optional input column 'zip'"),
    (with_inputs(col("age", T.LONG), col("city", T.STRING, nullable=True),
                 col("note", T.STRING)), Bump.MAJOR, "makes input column 'note' required"),
    (with_inputs(col("age", T.LONG, required=False), col("city", T.STRING, nullable=True),
                 col("note", T.STRING, required=False)),
     Bump.MINOR, "makes input column 'age' optional"),
    (with_inputs(col("age", T.LONG), col("city", T.STRING),
                 col("note", T.STRING, required=False)),
     Bump.MAJOR, "makes input column 'city' non-nullable"),
    (with_inputs(col("age", T.LONG, nullable=True), col("city", T.STRING, nullable=True),
                 col("note", T.STRING, required=False)),
     Bump.MINOR, "makes input column 'age' nullable"),
    (Signature(BASE.inputs, ()), Bump.MAJOR, "drops output column 'score'"),
    (Signature(BASE.inputs, (col("score", T.FLOAT),)),
     Bump.MAJOR, "changes type of output column 'score' from double to float"),
    (Signature(BASE.inputs, (col("score"), col("label", T.STRING))),
     Bump.MINOR, "adds output column 'label'"),
    (Signature(BASE.inputs, (col("score", nullable=True),)),
     Bump.MAJOR, "makes output column 'score' nullable"),
    (Signature(BASE.inputs, (TensorSpec("float64", (-1,)),)),
     Bump.MAJOR, "switches outputs from columns to tensors"),
    (with_inputs(TensorSpec("float64", (-1, 3))),
     Bump.MAJOR, "switches inputs from columns to tensors"),
])
def test_compare_signatures_follows_the_semver_rule(new: Signature, bump: Bump,
                                                    reason: str) -> None:
    assert compare_signatures(BASE, new) == (bump, reason)


def test_the_strongest_change_decides_and_names_all_changes_of_that_strength() -> None:
    new = with_inputs(col("city", T.STRING, nullable=True), col("note", T.STRING),
                      col("zip", T.STRING, required=False))
    bump, reason = compare_signatures(BASE, new)
    assert bump is Bump.MAJOR
    assert reason == "drops input column 'age'; makes input column 'note' required"


def test_many_changes_are_summarised() -> None:
    old = sig(*(col(f"c{i}") for i in range(6)))
    bump, reason = compare_signatures(old, sig(col("other")))
    assert bump is Bump.MAJOR
    assert reason.startswith("drops input column 'c0'; drops input column 'c1'; drops")
    assert reason.endswith(" and 4 more")


def test_adding_a_signature_is_minor_and_dropping_it_major() -> None:
    assert compare_signatures(None, None)[0] is Bump.PATCH
    assert compare_signatures(None, BASE) == (Bump.MINOR, "adds a signature")
    assert compare_signatures(BASE, None) == (Bump.MAJOR, "drops the signature")


TENSOR = sig(TensorSpec("float32", (-1, 4), "x"), outputs=(TensorSpec("int64", (-1,)),))


@pytest.mark.parametrize(("new", "bump", "reason"), [
    (TENSOR, Bump.PATCH, "same contract"),
    (sig(TensorSpec("float64", (-1, 4), "x"), outputs=TENSOR.outputs),
     Bump.MAJOR, "changes dtype of input tensor 'x' from float32 to float64"),
    (sig(TensorSpec("float32", (-1, 5), "x"), outputs=TENSOR.outputs),
     Bump.MAJOR, "changes shape of input tensor 'x' from (-1, 4) to (-1, 5)"),
    (sig(TensorSpec("float32", (-1, 4), "y"), outputs=TENSOR.outputs),
     Bump.MAJOR, "renames input tensor 'x' to 'y'"),
    (sig(TensorSpec("float32", (-1, 4), "x"), TensorSpec("float32", (-1,), "w"),
         outputs=TENSOR.outputs), Bump.MAJOR, "adds input tensor #1"),
    (sig(TensorSpec("float32", (-1, 4), "x")), Bump.MAJOR, "drops output tensor #0"),
    (sig(TensorSpec("float32", (-1, 4), "x"),
         outputs=(*TENSOR.outputs, TensorSpec("float64", (-1, 2)))),
     Bump.MINOR, "adds output tensor #1"),
    (sig(TensorSpec("float32", (-1, 4), "x"), outputs=(TensorSpec("int32", (-1,)),)),
     Bump.MAJOR, "changes dtype of output tensor #0 from int64 to int32"),
    (sig(col("x"), outputs=TENSOR.outputs), Bump.MAJOR,
     "switches inputs from tensors to columns"),
])
def test_any_tensor_change_is_major(new: Signature, bump: Bump, reason: str) -> None:
    assert compare_signatures(TENSOR, new) == (bump, reason)


# --- InputValidator: columns ----------------------------------------------------------

PEOPLE = sig(col("age"), col("height", T.FLOAT), col("visits", T.LONG),
             col("rank", T.INTEGER), col("member", T.BOOLEAN), col("city", T.STRING),
             col("joined", T.DATETIME))
ROW = {"age": 31, "height": 1.8, "visits": 3.0, "rank": 2, "member": True, "city": "Oslo",
       "joined": "2024-03-01T10:00:00"}


def test_records_and_columns_give_the_same_typed_frame() -> None:
    validator = InputValidator(PEOPLE)
    second = {**ROW, "age": 40.5, "visits": 7}
    by_records = validator.validate([ROW, second])
    by_columns = validator.validate({k: [ROW[k], second[k]] for k in reversed(list(ROW))})
    pd.testing.assert_frame_equal(by_records, by_columns)
    assert list(by_records.columns) == list(ROW)
    assert by_records.dtypes.astype(str).tolist() == [
        "float64", "float32", "int64", "int32", "bool", "object", "datetime64[us]"]
    assert by_records["age"].tolist() == [31.0, 40.5]
    assert by_records["visits"].tolist() == [3, 7]
    assert by_records["joined"][0] == pd.Timestamp("2024-03-01T10:00:00")


def test_a_dict_of_scalars_is_one_record_and_a_frame_is_accepted() -> None:
    validator = InputValidator(PEOPLE)
    one = validator.validate(ROW)
    assert len(one) == 1
    pd.testing.assert_frame_equal(validator.validate(one), one)


def test_the_spec_message_for_a_string_where_a_number_belongs() -> None:
    validator = InputValidator(sig(col("age")))
    rows = [{"age": 1}, {"age": 2.5}, {"age": 3}, {"age": "thirty"}]
    [problem] = problems(validator, rows)
    assert problem == {"column": "age", "row": 3, "expected": "double", "got": "string",
                       "message": "column 'age': expected double, got string at row 3"}
    with pytest.raises(SignatureViolationError) as caught:
        validator.validate(rows)
    assert str(caught.value) == "column 'age': expected double, got string at row 3"
    assert caught.value.code == "invalid_input"
    assert caught.value.to_dict()["details"] == [problem]


def test_integral_floats_fit_long_and_fractions_do_not() -> None:
    validator = InputValidator(sig(col("n", T.LONG)))
    frame = validator.validate({"n": [3.0, -2.0, 5]})
    assert frame["n"].dtype == np.int64
    assert frame["n"].tolist() == [3, -2, 5]
    assert problems(validator, {"n": [1, 3.5]}) == [{
        "column": "n", "row": 1, "expected": "long", "got": "non-integral double",
        "message": "column 'n': expected long, got non-integral double at row 1"}]


def test_integer_must_fit_int32_and_long_int64() -> None:
    assert messages(InputValidator(sig(col("n", T.INTEGER))), {"n": [1, 2**31, -(2**31)]}) == [
        "column 'n': expected integer, got long out of range at row 1"]
    assert messages(InputValidator(sig(col("n", T.LONG))), {"n": [2**63, 1e19]}) == [
        "column 'n': expected long, got long out of range at row 0",
        "column 'n': expected long, got double out of range at row 1"]


def test_booleans_are_not_numbers_and_numbers_are_not_booleans() -> None:
    validator = InputValidator(sig(col("x"), col("n", T.LONG), col("b", T.BOOLEAN)))
    assert messages(validator, [{"x": True, "n": False, "b": 1}]) == [
        "column 'x': expected double, got boolean at row 0",
        "column 'n': expected long, got boolean at row 0",
        "column 'b': expected boolean, got long at row 0"]


def test_each_type_refuses_foreign_values() -> None:
    validator = InputValidator(sig(col("s", T.STRING), col("d", T.DATETIME),
                                   col("f", T.FLOAT)))
    rows = [{"s": 1, "d": 1700000000, "f": "1"}, {"s": ["a"], "d": "yesterday", "f": 1e39},
            {"s": {"a": 1}, "d": "2024-13-01", "f": 2**200}]
    assert messages(validator, rows) == [
        "column 's': expected string, got long at row 0",
        "column 's': expected string, got array at row 1",
        "column 's': expected string, got object at row 2",
        "column 'd': expected datetime, got long at row 0",
        "column 'd': expected datetime, got non-ISO-8601 string at row 1",
        "column 'd': expected datetime, got non-ISO-8601 string at row 2",
        "column 'f': expected float, got string at row 0",
        "column 'f': expected float, got double out of float range at row 1",
        "column 'f': expected float, got double out of float range at row 2"]


def test_missing_required_columns_are_reported_once_per_column() -> None:
    validator = InputValidator(sig(col("a"), col("b"), col("c")))
    found = problems(validator, [{"a": 1, "b": 1}, {"a": 1}, {"a": 1}])
    assert found == [
        {"column": "b", "row": 1, "expected": "double", "got": "missing", "rows": [1, 2],
         "message": "column 'b': required column is missing at rows 1, 2"},
        {"column": "c", "row": None, "expected": "double", "got": "missing",
         "message": "column 'c': required column is missing"}]
    assert messages(validator, {"a": [1], "b": [2]}) == [
        "column 'c': required column is missing"]


def test_long_lists_of_missing_rows_are_shortened() -> None:
    validator = InputValidator(sig(col("a"), col("b")))
    [problem] = problems(validator, [{"a": 1, "b": 2}] + [{"a": 1}] * 12)
    assert problem["message"] == (
        "column 'b': required column is missing at rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 "
        "and 2 more")
    assert problem["rows"] == list(range(1, 13))


def test_absent_optional_columns_are_filled_with_nulls() -> None:
    validator = InputValidator(sig(
        col("a"), col("x", required=False), col("n", T.LONG, required=False),
        col("b", T.BOOLEAN, required=False), col("s", T.STRING, required=False),
        col("d", T.DATETIME, required=False)))
    for payload in ([{"a": 1}, {"a": 2, "n": 5, "s": "k"}], {"a": [1, 2]}):
        frame = validator.validate(payload)
        assert list(frame.columns) == ["a", "x", "n", "b", "s", "d"]
        assert frame["x"].isna().all()
        assert frame["n"].dtype == np.float64
        assert frame["b"].dtype == object
        assert frame["b"].tolist() == [None, None]
        assert frame["s"].dtype == object
        assert frame["s"][0] is None
        assert frame["d"].isna().all()
    frame = validator.validate([{"a": 1}, {"a": 2, "n": 5, "s": "k"}])
    assert frame["n"].tolist()[1] == 5.0
    assert frame["s"].tolist() == [None, "k"]


def test_extra_columns_are_refused() -> None:
    validator = InputValidator(sig(col("a")))
    expected = [{"column": "zip", "row": None, "expected": None, "got": None,
                 "message": "column 'zip': unexpected column"}]
    assert problems(validator, [{"a": 1}, {"a": 2, "zip": "x"}]) == expected
    assert problems(validator, {"a": [1], "zip": ["x"]}) == expected


def test_nulls_pass_only_nullable_columns() -> None:
    nullable = InputValidator(sig(col("x", nullable=True), col("n", T.LONG, nullable=True),
                                  col("b", T.BOOLEAN, nullable=True),
                                  col("s", T.STRING, nullable=True),
                                  col("d", T.DATETIME, nullable=True)))
    frame = nullable.validate([{"x": None, "n": None, "b": None, "s": None, "d": None},
                               {"x": float("nan"), "n": 4, "b": True, "s": "k",
                                "d": "2024-01-01"}])
    assert frame["x"].isna().all()
    assert frame["n"].dtype == np.float64
    assert frame["n"].tolist()[1] == 4.0
    assert frame["b"].tolist() == [None, True]
    assert frame["s"].tolist() == [None, "k"]
    assert pd.isna(frame["d"][0])

    strict = InputValidator(sig(col("x"), col("s", T.STRING)))
    assert problems(strict, {"x": [None, float("nan")], "s": [float("nan"), None]}) == [
        {"column": c, "row": r, "expected": e, "got": "null",
         "message": f"column '{c}': null value not allowed at row {r}"}
        for c, e in (("x", "double"), ("s", "string")) for r in (0, 1)]


def test_non_finite_values_are_refused_in_every_column() -> None:
    validator = InputValidator(sig(col("x", nullable=True), col("s", T.STRING)))
    payload = json.loads('[{"x": Infinity, "s": "a"}, {"x": NaN, "s": -Infinity}]')
    assert problems(validator, payload) == [
        {"column": "x", "row": 0, "expected": "double", "got": "inf",
         "message": "column 'x': non-finite value at row 0"},
        {"column": "s", "row": 1, "expected": "string", "got": "-inf",
         "message": "column 's': non-finite value at row 1"}]


@pytest.mark.parametrize("payload", [[], {"a": []}, {}])
def test_no_rows_is_a_violation(payload: Any) -> None:
    assert problems(InputValidator(sig(col("a"))), payload) == [{
        "column": None, "row": None, "expected": "at least 1 row", "got": "0 rows",
        "message": "input: has no rows"}]


@pytest.mark.parametrize(("payload", "got"), [
    ("age=3", "string"), (3, "long"), (None, "null"), ((1, 2), "array")])
def test_payloads_that_are_not_lists_or_dicts_are_refused(payload: Any, got: str) -> None:
    assert messages(InputValidator(sig(col("a"))), payload) == [
        f"input: expected a list of records or a dict of columns, got {got}"]


def test_records_that_are_not_objects_are_refused_with_their_rows() -> None:
    validator = InputValidator(sig(col("a")))
    assert messages(validator, [{"a": 1}, [1], "a", {"a": 2}]) == [
        "input: expected a record (an object of column values), got array at row 1",
        "input: expected a record (an object of column values), got string at row 2"]


def test_ragged_columns_are_refused() -> None:
    validator = InputValidator(sig(col("a"), col("b"), col("c")))
    assert problems(validator, {"a": [1, 2, 3], "b": [1, 2], "c": 5}) == [
        {"column": "c", "row": None, "expected": "array", "got": "long",
         "message": "column 'c': expected a list of values, got long"},
        {"column": "b", "row": None, "expected": "3 values", "got": "2 values",
         "message": "column 'b': has 2 values, expected 3 like the other columns"}]


def test_problems_are_capped_but_all_are_counted() -> None:
    validator = InputValidator(sig(col("a")), max_problems=10)
    with pytest.raises(SignatureViolationError) as caught:
        validator.validate({"a": ["x"] * 300})
    assert len(caught.value.details) == 10
    assert [p["row"] for p in caught.value.details] == list(range(10))
    assert str(caught.value) == (
        "column 'a': expected double, got string at row 0 (and 299 more problems)")


def test_datetimes_parse_iso_8601_and_keep_offsets_in_utc() -> None:
    validator = InputValidator(sig(col("t", T.DATETIME)))
    naive = validator.validate({"t": ["2024-01-01", "2024-01-01T10:30:00.5"]})
    assert naive["t"].tolist() == [pd.Timestamp("2024-01-01"),
                                   pd.Timestamp("2024-01-01T10:30:00.5")]
    aware = validator.validate({"t": ["2024-01-01T10:00:00Z", "2024-01-01T12:00:00+02:00",
                                      dt.datetime(2024, 1, 1, 10)]})
    assert str(aware["t"].dtype) == "datetime64[us, UTC]"
    assert set(aware["t"]) == {pd.Timestamp("2024-01-01T10:00:00Z")}


def test_long_datetime_columns_convert_the_same_way() -> None:
    validator = InputValidator(sig(col("t", T.DATETIME, nullable=True)))
    values = [f"2024-01-{d:02d}T08:00:00" for d in range(1, 29)] * 4 + [None]
    naive = validator.validate({"t": values})["t"]
    assert str(naive.dtype) == "datetime64[us]"
    assert naive[0] == pd.Timestamp("2024-01-01T08:00")
    assert pd.isna(naive.iloc[-1])
    aware = validator.validate({"t": [*values[:-1], "2024-01-01T08:00:00+01:00"]})["t"]
    assert str(aware.dtype) == "datetime64[us, UTC]"
    assert aware.iloc[-1] == pd.Timestamp("2024-01-01T07:00Z")


def test_numpy_scalars_from_python_callers_are_understood() -> None:
    validator = InputValidator(sig(col("x"), col("n", T.INTEGER), col("b", T.BOOLEAN)))
    frame = validator.validate([{"x": np.float32(1.5), "n": np.int64(2), "b": np.bool_(True)},
                                {"x": np.int8(3), "n": np.float64(4.0), "b": False}])
    assert frame["x"].tolist() == [1.5, 3.0]
    assert frame["n"].tolist() == [2, 4]
    assert frame["b"].tolist() == [True, False]


def test_columns_may_be_arrays_or_series_for_python_callers() -> None:
    validator = InputValidator(sig(col("x"), col("s", T.STRING)))
    frame = validator.validate({"x": np.array([1, 2]), "s": pd.Series(["a", "b"])})
    assert frame["x"].tolist() == [1.0, 2.0]
    assert frame["s"].tolist() == ["a", "b"]


def test_validator_refuses_unusable_signatures() -> None:
    with pytest.raises(InvalidInputError, match="no inputs"):
        InputValidator(Signature(inputs=()))
    with pytest.raises(InvalidInputError, match="mixes columns and tensors"):
        InputValidator(sig(col("a"), TensorSpec("float64", (-1,))))
    with pytest.raises(InvalidInputError, match="repeats"):
        InputValidator(sig(col("a"), col("a")))
    with pytest.raises(InvalidInputError, match="at least 1"):
        InputValidator(sig(col("a")), max_problems=0)
    with pytest.raises(InvalidInputError, match="cannot be enforced"):
        InputValidator(sig(TensorSpec("datetime64[s]", (-1,))))
    with pytest.raises(InvalidInputError, match="cannot be enforced"):
        InputValidator(sig(TensorSpec("no-such-dtype", (-1,))))


# --- InputValidator: tensors ----------------------------------------------------------


def test_a_tensor_payload_becomes_an_array_of_the_spec_dtype() -> None:
    validator = InputValidator(sig(TensorSpec("float32", (-1, 3))))
    array = validator.validate([[1, 2, 3], [4.5, 5, 6]])
    assert array.dtype == np.float32
    assert array.tolist() == [[1, 2, 3], [4.5, 5, 6]]
    assert validator.validate(np.ones((2, 3))).dtype == np.float32


def test_tensor_problems_name_their_rows() -> None:
    validator = InputValidator(sig(TensorSpec("float64", (-1, 3))))
    payload = [[1, 2, 3], [1, 2], [1, "a", 3], [True, 1, 2], [1, None, 3],
               [float("nan"), 1, 2], [1, 2, float("-inf")], [[1, 2], 3, 4], 7]
    assert messages(validator, payload) == [
        "tensor: expected row shape (3,), got (2,) at row 1",
        "tensor: expected float64, got string at row 2",
        "tensor: expected float64, got boolean at row 3",
        "tensor: null value not allowed at row 4",
        "tensor: non-finite value at row 5",
        "tensor: non-finite value at row 6",
        "tensor: ragged values at row 7",
        "tensor: expected row shape (3,), got () at row 8"]


def test_rows_of_different_shapes_under_free_dimensions_are_named() -> None:
    validator = InputValidator(sig(TensorSpec("float64", (-1, -1))))
    assert validator.validate([[1, 2], [3, 4]]).shape == (2, 2)
    assert messages(validator, [[1, 2], [3], [4, 5, 6]]) == [
        "tensor: expected row shape (2,) like the first row, got (1,) at row 1",
        "tensor: expected row shape (2,) like the first row, got (3,) at row 2"]


def test_object_arrays_from_python_callers_are_looked_into() -> None:
    words = InputValidator(sig(TensorSpec("str", (-1,))))
    assert words.validate(np.array(["a", "b"], dtype=object)).tolist() == ["a", "b"]
    numbers = InputValidator(sig(TensorSpec("float64", (-1,))))
    assert messages(numbers, np.array([1.0, None], dtype=object)) == [
        "tensor: null value not allowed at row 1"]


def test_a_consistently_wrong_width_is_reported_per_row() -> None:
    validator = InputValidator(sig(TensorSpec("float64", (-1, 4), "x")), max_problems=2)
    with pytest.raises(SignatureViolationError) as caught:
        validator.validate([[1.0, 2.0, 3.0]] * 5)
    assert [p["row"] for p in caught.value.details] == [0, 1]
    assert str(caught.value) == (
        "tensor 'x': expected row shape (4,), got (3,) at row 0 (and 4 more problems)")


def test_integer_tensors_take_integral_numbers_in_range() -> None:
    validator = InputValidator(sig(TensorSpec("int32", (-1, 2))))
    array = validator.validate([[1, 2.0], [3, 4]])
    assert array.dtype == np.int32
    assert array.tolist() == [[1, 2], [3, 4]]
    assert messages(validator, [[1, 2.5], [2**40, 1], [1, float("inf")], [False, 1]]) == [
        "tensor: expected int32, got non-integral double at row 0",
        "tensor: expected int32, got long out of range at row 1",
        "tensor: non-finite value at row 2",
        "tensor: expected int32, got boolean at row 3"]
    uint = InputValidator(sig(TensorSpec("uint8", (-1,))))
    assert uint.validate([0, 255.0]).tolist() == [0, 255]
    assert messages(uint, [1, -1, 256]) == [
        "tensor: expected uint8, got long out of range at row 1",
        "tensor: expected uint8, got long out of range at row 2"]


def test_bool_str_and_small_float_tensors() -> None:
    flags = InputValidator(sig(TensorSpec("bool", (-1,))))
    assert flags.validate([True, False]).tolist() == [True, False]
    assert messages(flags, [True, 1]) == ["tensor: expected bool, got long at row 1"]
    words = InputValidator(sig(TensorSpec("str", (-1,))))
    assert words.validate(["a", "longer"]).tolist() == ["a", "longer"]
    assert messages(words, ["a", 1]) == ["tensor: expected str, got long at row 1"]
    halves = InputValidator(sig(TensorSpec("float16", (-1,))))
    assert messages(halves, [1.0, 1e6, 10**400]) == [
        "tensor: expected float16, got double out of range at row 1",
        "tensor: expected float16, got long out of range at row 2"]


def test_several_named_tensors_come_as_a_dict() -> None:
    validator = InputValidator(sig(TensorSpec("float64", (-1, 2), "x"),
                                   TensorSpec("int64", (-1,), "ids")))
    arrays = validator.validate({"x": [[1, 2]], "ids": [7]})
    assert set(arrays) == {"x", "ids"}
    assert arrays["ids"].dtype == np.int64
    assert messages(validator, {"x": [[1, 2]], "extra": [1]}) == [
        "tensor 'extra': unexpected tensor", "tensor 'ids': required tensor is missing"]
    assert messages(validator, [[1, 2]]) == [
        "input: expected a dict of 'x', 'ids', got array"]


def test_several_unnamed_tensors_are_keyed_by_position() -> None:
    validator = InputValidator(sig(TensorSpec("float64", (-1,)), TensorSpec("int64", (-1,))))
    arrays = validator.validate({"0": [1.5], "1": [2]})
    assert arrays["0"].tolist() == [1.5]
    assert arrays["1"].tolist() == [2]


def test_one_named_tensor_takes_a_list_or_a_dict() -> None:
    validator = InputValidator(sig(TensorSpec("float64", (-1,), "x")))
    assert validator.validate([1, 2]).tolist() == [1.0, 2.0]
    assert validator.validate({"x": [1, 2]}).tolist() == [1.0, 2.0]
    assert messages(validator, {"x": 3}) == ["tensor 'x': expected a nested list of rows, "
                                             "got long"]
    unnamed = InputValidator(sig(TensorSpec("float64", (-1,))))
    assert messages(unnamed, {"x": [1]}) == ["input: expected a nested list, got object"]


def test_empty_tensors_and_fixed_batch_sizes() -> None:
    assert messages(InputValidator(sig(TensorSpec("float64", (-1,)))), []) == [
        "tensor: has no rows"]
    fixed = InputValidator(sig(TensorSpec("float64", (1, 2))))
    assert fixed.validate([[1, 2]]).shape == (1, 2)
    assert messages(fixed, [[1, 2], [3, 4]]) == ["tensor: expected 1 rows, got 2"]


# --- input examples -------------------------------------------------------------------


def test_to_jsonable_turns_a_frame_into_json_records() -> None:
    frame = pd.DataFrame({
        "x": [1.5, np.nan, 3.0, 4.0, 5.0, 6.0],
        "n": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
        "i": np.arange(6, dtype=np.int32),
        "s": ["a", None, "c", "d", "e", "f"],
        "t": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04", "2024-01-05",
                             "2024-01-06"]),
        "b": [True, False, True, True, False, True],
    })
    example = to_jsonable(frame)
    assert isinstance(example, list)
    assert len(example) == 5
    assert example[:2] == [
        {"x": 1.5, "n": 1, "i": 0, "s": "a", "t": "2024-01-01T00:00:00", "b": True},
        {"x": None, "n": None, "i": 1, "s": None, "t": None, "b": False}]
    assert type(example[0]["i"]) is int
    json.dumps(example, allow_nan=False)
    assert len(to_jsonable(frame, max_rows=2)) == 2


def test_to_jsonable_handles_arrays_dicts_lists_and_series() -> None:
    assert to_jsonable(np.array([[1.0, np.nan], [np.inf, 2.0]])) == [[1.0, None], [None, 2.0]]
    assert to_jsonable(np.arange(10), max_rows=3) == [0, 1, 2]
    assert to_jsonable(np.array(["2024-01-01", "NaT"], dtype="datetime64[s]")) == [
        "2024-01-01T00:00:00", None]
    assert to_jsonable({"a": np.arange(8), "b": [1, 2, 3, 4, 5, 6], "c": np.float32(1.5),
                        "when": dt.date(2024, 1, 1)}) == {
        "a": [0, 1, 2, 3, 4], "b": [1, 2, 3, 4, 5], "c": 1.5, "when": "2024-01-01"}
    assert to_jsonable([{"a": np.int64(1)}] * 9, max_rows=2) == [{"a": 1}, {"a": 1}]
    assert to_jsonable(pd.Series([1.0, None, 3.0])) == [1.0, None, 3.0]
    assert to_jsonable(pd.DataFrame()) == []


def test_to_jsonable_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(InvalidInputError, match="must be a DataFrame"):
        to_jsonable("text")
    with pytest.raises(InvalidInputError, match="no JSON form"):
        to_jsonable([object()])
    with pytest.raises(InvalidInputError, match="at least 1"):
        to_jsonable([1], max_rows=0)


def test_examples_round_trip_through_json() -> None:
    frame = pd.DataFrame({"x": [1.5, np.nan], "n": [1, 2], "s": ["a", None],
                          "t": pd.to_datetime(["2024-01-01", "2024-02-01"]),
                          "b": [True, False], "i": np.array([1, 2], dtype=np.int32)})
    signature = infer_signature(frame)
    example = json.loads(json.dumps(to_jsonable(frame)))
    rebuilt = example_from_jsonable(example, signature)
    expected = frame.astype({"t": "datetime64[us]"})
    expected["s"] = pd.Series(["a", None], dtype=object)
    pd.testing.assert_frame_equal(rebuilt, expected, check_column_type=False)

    array = np.arange(6, dtype=np.float32).reshape(3, 2)
    tensor = example_from_jsonable(to_jsonable(array), infer_signature(array))
    np.testing.assert_array_equal(tensor, array)
    assert tensor.dtype == np.float32


def test_examples_rebuild_without_a_signature() -> None:
    frame = example_from_jsonable([{"a": 1}, {"a": 2}])
    assert frame["a"].tolist() == [1, 2]
    assert example_from_jsonable({"a": [1.5]})["a"].tolist() == [1.5]
    assert example_from_jsonable([[1, 2]]).shape == (1, 2)
    with pytest.raises(InvalidInputError, match="ragged"):
        example_from_jsonable([[1, 2], [3]])


# --- properties -----------------------------------------------------------------------

_VALUES: dict[ColumnType, st.SearchStrategy[Any]] = {
    T.DOUBLE: st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                        st.integers(-(2**53), 2**53)),
    T.FLOAT: st.one_of(st.floats(-1e30, 1e30), st.integers(-(2**24), 2**24)),
    T.LONG: st.one_of(st.integers(-(2**63), 2**63 - 1),
                      st.integers(-(2**40), 2**40).map(float)),
    T.INTEGER: st.integers(-(2**31), 2**31 - 1),
    T.BOOLEAN: st.booleans(),
    T.STRING: st.text(max_size=5),
    T.DATETIME: st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)).map(
        dt.datetime.isoformat),
}
_BAD: dict[ColumnType, list[Any]] = {
    T.DOUBLE: ["1.5", True, [1.0]], T.FLOAT: ["x", False, 1e300],
    T.LONG: ["7", 2.5, True, 2**64], T.INTEGER: [0.5, 2**31, "1"],
    T.BOOLEAN: [1, "true", 0.0], T.STRING: [1, 2.5, True, {"a": "b"}],
    T.DATETIME: ["not a date", 17, False],
}


@st.composite
def _signatures(draw: st.DrawFn) -> Signature:
    names = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1,
                          max_size=6, unique=True))
    return Signature(tuple(ColumnSpec(name, draw(st.sampled_from(list(ColumnType))),
                                      nullable=draw(st.booleans())) for name in names))


def _records(draw: st.DrawFn, signature: Signature) -> list[dict[str, Any]]:
    row = st.fixed_dictionaries({
        c.name: st.one_of(st.none(), _VALUES[c.type]) if c.nullable else _VALUES[c.type]
        for c in signature.columns})
    return draw(st.lists(row, min_size=1, max_size=12))


def _expected_dtype(spec: ColumnSpec, has_null: bool) -> str:
    if spec.type is T.DATETIME:
        return "datetime64[us]"
    if has_null and spec.type in (T.LONG, T.INTEGER):
        return "float64"
    if has_null and spec.type is T.BOOLEAN:
        return "object"
    return {T.DOUBLE: "float64", T.FLOAT: "float32", T.LONG: "int64", T.INTEGER: "int32",
            T.BOOLEAN: "bool", T.STRING: "object"}[spec.type]


def _as_payload(records: list[dict[str, Any]], columnar: bool) -> Any:
    if not columnar:
        return records
    return {name: [r[name] for r in records] for name in records[0]}


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_valid_records_give_a_frame_of_the_right_shape_and_dtypes(data: st.DataObject) -> None:
    signature = data.draw(_signatures())
    records = _records(data.draw, signature)
    columnar = data.draw(st.booleans())
    frame = InputValidator(signature).validate(_as_payload(records, columnar))
    assert frame.shape == (len(records), len(signature.inputs))
    assert list(frame.columns) == [c.name for c in signature.columns]
    for spec in signature.columns:
        has_null = any(r[spec.name] is None for r in records)
        assert str(frame[spec.name].dtype) == _expected_dtype(spec, has_null), spec
        if spec.type in (T.DOUBLE, T.LONG, T.INTEGER, T.BOOLEAN, T.STRING):
            got = [None if pd.isna(v) else v for v in frame[spec.name].tolist()]
            # Nullable long/integer columns with nulls travel as float64, like pandas does.
            as_float = has_null and spec.type in (T.LONG, T.INTEGER)
            assert got == [None if r[spec.name] is None else
                           float(r[spec.name]) if as_float else r[spec.name] for r in records]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_single_corruption_is_reported_at_exactly_its_cell(data: st.DataObject) -> None:
    signature = data.draw(_signatures())
    records = _records(data.draw, signature)
    row = data.draw(st.integers(0, len(records) - 1))
    spec = data.draw(st.sampled_from(signature.columns))
    bad = [*_BAD[spec.type], math.inf, -math.inf] + ([] if spec.nullable else [None])
    records[row][spec.name] = data.draw(st.sampled_from(bad))
    found = problems(InputValidator(signature),
                     _as_payload(records, data.draw(st.booleans())))
    assert [(p["column"], p["row"]) for p in found] == [(spec.name, row)]
    assert found[0]["message"].startswith(f"column {spec.name!r}: ")
    assert found[0]["message"].endswith(f" at row {row}")


def test_validate_as_array_for_all_double_signatures() -> None:
    from modelhost.entities import ColumnSpec, ColumnType, Signature
    from modelhost.signature import InputValidator

    double = InputValidator(Signature(inputs=(ColumnSpec("a", ColumnType.DOUBLE),
                                              ColumnSpec("b", ColumnType.DOUBLE))))
    assert double.numeric_block
    array = double.validate([{"b": 2, "a": 1.5}, {"a": 3, "b": 4.0}], as_array=True)
    assert isinstance(array, np.ndarray)
    assert array.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    columns = double.validate({"a": [1, 2], "b": [3, 4]}, as_array=True)
    assert columns.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    mixed = InputValidator(Signature(inputs=(ColumnSpec("a", ColumnType.DOUBLE),
                                             ColumnSpec("s", ColumnType.STRING))))
    assert not mixed.numeric_block
    assert isinstance(mixed.validate([{"a": 1.0, "s": "x"}], as_array=True), pd.DataFrame)
    optional = InputValidator(Signature(inputs=(
        ColumnSpec("a", ColumnType.DOUBLE), ColumnSpec("b", ColumnType.DOUBLE, required=False))))
    assert not optional.numeric_block


def test_a_numeric_frame_takes_the_columnar_path_with_the_same_result() -> None:
    """A DataFrame of the signature's float columns is converted column by column in
    numpy; the result is the value-by-value path's, and anything that path would
    refuse (a null, a string, an infinity, a missing or extra column) still goes to it
    and is named."""
    X = load_iris(as_frame=True).data
    signature = infer_signature(X)
    validator = InputValidator(signature)
    fast = validator.validate(X)
    slow = validator.validate(X.to_dict(orient="records"))
    pd.testing.assert_frame_equal(fast, slow)
    assert np.array_equal(validator.validate(X[X.columns[::-1]]).to_numpy(), X.to_numpy())
    ints = X.astype(int)  # whole numbers are numbers of a double column
    assert np.array_equal(validator.validate(ints).to_numpy(), ints.to_numpy(float))
    for broken, message in ((X.assign(**{X.columns[1]: np.nan}), "null value"),
                            (X.astype(object).assign(**{X.columns[0]: "a"}), "got string"),
                            (X.assign(**{X.columns[2]: np.inf}), "finite"),
                            (X.drop(columns=X.columns[3]), "missing"),
                            (X.assign(extra=1.0), "unexpected column")):
        with pytest.raises(SignatureViolationError, match=message):
            validator.validate(broken)

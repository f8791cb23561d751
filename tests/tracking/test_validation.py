"""Data schemas (inference, YAML), validation of frames and diffs of dataset versions, on
real data bundled with scikit-learn."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from modelhost import Client
from modelhost.entities import DatasetVersion
from modelhost.errors import FileNotFoundInputError, InvalidInputError
from modelhost.tracking import (
    ColumnRule,
    DataSchema,
    diff_datasets,
    infer_schema,
    read_frame,
    read_version,
    validate_frame,
)


@functools.cache
def _cancer() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "patient_id", range(1000, 1000 + len(frame)))
    frame["diagnosis"] = np.where(frame["target"] == 1, "benign", "malignant")
    return frame


@pytest.fixture
def cancer_csv(tmp_path: Path) -> Path:
    path = tmp_path / "cancer.csv"
    _cancer().to_csv(path, index=False)
    return path


@pytest.fixture
def schema(cancer_csv: Path) -> DataSchema:
    return infer_schema(read_frame(cancer_csv))


def test_inferred_schema_describes_the_data_and_round_trips(cancer_csv: Path,
                                                            tmp_path: Path) -> None:
    frame = read_frame(cancer_csv)
    schema = infer_schema(frame)
    assert list(schema.columns) == list(frame.columns)
    assert schema.min_rows == 1 and schema.max_rows is None
    assert schema.columns["patient_id"] == ColumnRule(type="long", unique=True)
    radius = schema.columns["mean radius"]
    assert (radius.type, radius.nullable, radius.unique) == ("double", False, False)
    assert radius.min == frame["mean radius"].min() and radius.max == frame["mean radius"].max()
    assert schema.columns["target"] == ColumnRule(type="long", min=0, max=1)
    assert schema.columns["diagnosis"] == ColumnRule(type="string",
                                                     allowed=["benign", "malignant"])

    text = schema.to_yaml()
    assert "diagnosis:\n    type: string" in text and "- malignant" in text
    assert DataSchema.from_yaml(text) == schema
    saved = schema.save(tmp_path / "schema.yaml")
    assert DataSchema.load(saved) == schema


def test_inference_of_nulls_categories_ids_and_types() -> None:
    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    frame["species"] = np.asarray(iris.target_names)[iris.target]
    frame.loc[[3, 7], "sepal width (cm)"] = np.nan
    frame["sample"] = [f"s{i}" for i in range(len(frame))]  # all distinct strings
    frame["measured"] = pd.date_range("2024-01-01", periods=len(frame), freq="D")
    frame["large"] = frame["petal length (cm)"] > 4
    frame["empty"] = None
    schema = infer_schema(frame)
    rules = schema.columns
    assert rules["sepal width (cm)"].nullable and not rules["sepal length (cm)"].nullable
    assert rules["species"].allowed == ["setosa", "versicolor", "virginica"]
    assert rules["sample"] == ColumnRule(type="string", unique=True)
    assert rules["measured"] == ColumnRule(type="datetime")
    assert rules["large"] == ColumnRule(type="boolean")
    assert rules["empty"] == ColumnRule(type="string", nullable=True)
    assert DataSchema.from_yaml(schema.to_yaml()) == schema
    # Few enough distinct values is a matter of the threshold.
    assert infer_schema(frame, categorical_max=2).columns["species"].allowed is None
    assert validate_frame(frame, schema).ok
    with pytest.raises(InvalidInputError, match="categorical_max"):
        infer_schema(frame, categorical_max=-1)


def test_clean_data_passes(cancer_csv: Path, schema: DataSchema) -> None:
    report = validate_frame(read_frame(cancer_csv), schema)
    assert report.ok and report.failures == ()
    assert (report.rows, report.columns) == (569, 33)
    assert report.summary() == ("Valid: 569 rows and 33 columns pass every check of the "
                                "schema.")
    assert report.to_dict() == {"ok": True, "rows": 569, "columns": 33, "failures": []}


def test_corrupted_data_reports_every_violation_with_examples(tmp_path: Path,
                                                              schema: DataSchema) -> None:
    schema.min_rows = 600  # the data has 569 rows: too few
    bad = _cancer().astype({"mean texture": object})
    bad.loc[[4, 9], "mean radius"] = [250.0, -1.0]  # out of range
    bad.loc[[2, 5, 8], "mean area"] = np.nan  # missing in a non-nullable column
    bad.loc[6, "diagnosis"] = "unknown"  # not an allowed category
    bad.loc[3, "mean texture"] = "twelve"  # a string in a numeric column
    bad.loc[11, "patient_id"] = 1000  # the id of row 0 again
    bad = bad.drop(columns=["worst symmetry"])  # a missing column
    bad["comment"] = "ok"  # a column the schema does not know
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)

    report = validate_frame(read_frame(path), schema)
    assert not report.ok
    found = {(f.column, f.check): f for f in report.failures}
    radius = schema.columns["mean radius"]
    in_range = f"in_range({radius.min:g}, {radius.max:g})"
    assert list(found) == [
        (None, "row_count"),
        ("patient_id", "unique"),
        ("mean radius", in_range),
        ("mean texture", "dtype"),
        ("mean area", "not_nullable"),
        ("worst symmetry", "column_present"),
        ("diagnosis", "isin"),
        ("comment", "column_in_schema"),
    ]
    assert found[None, "row_count"].message == "569 rows; the schema needs at least 600"
    assert found["patient_id", "unique"].examples == ((0, 1000), (11, 1000))
    assert found["mean radius", in_range].count == 2
    assert found["mean radius", in_range].examples == ((4, 250.0), (9, -1.0))
    assert found["mean texture", "dtype"].examples == ((3, "twelve"),)
    assert found["mean area", "not_nullable"].count == 3
    assert [row for row, _ in found["mean area", "not_nullable"].examples] == [2, 5, 8]
    assert found["diagnosis", "isin"].examples == ((6, "unknown"),)

    summary = report.summary()
    assert summary.startswith("Invalid: 8 checks failed on 569 rows and 33 columns.")
    assert "- column 'mean texture': dtype failed for 1 row (expected double values); " \
           "e.g. row 3: 'twelve'" in summary
    assert "- column 'worst symmetry': column_present failed (the column is missing)" in summary
    assert "- column 'comment': column_in_schema failed" in summary
    assert "row 6: 'unknown'" in summary and "row 4: 250.0, row 9: -1.0" in summary
    body = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert body["ok"] is False and len(body["failures"]) == 8
    assert body["failures"][4]["examples"][0] == {"row": 2, "value": None}


def test_examples_are_capped_and_long_columns_are_read_leniently(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    diabetes["visits"] = (diabetes["age"] // 10).astype(int)
    schema = infer_schema(diabetes)
    assert schema.columns["visits"].type == "long"
    assert schema.columns["sex"] == ColumnRule(type="double", min=1.0, max=2.0)
    schema.columns["visits"].nullable = True
    schema.columns["bmi"].min, schema.columns["bmi"].max = None, 30.0
    schema.max_rows = 500
    frame = diabetes.copy()
    frame["visits"] = frame["visits"].astype(float)
    frame.loc[0, "visits"] = np.nan  # a long column with a gap reads as float: still long
    path = tmp_path / "diabetes.csv"
    frame.to_csv(path, index=False)
    report = validate_frame(read_frame(path), schema)
    (failure,) = report.failures
    assert failure.check == "max(30)" and failure.count == int((diabetes["bmi"] > 30).sum())
    assert len(failure.examples) == 5 and f"for {failure.count} rows" in report.summary()

    frame.loc[1, "visits"] = 2.5  # not a whole number
    report = validate_frame(frame, schema)
    assert [(f.column, f.check, f.examples) for f in report.failures][1] == (
        "visits", "dtype", ((1, 2.5),))


def test_booleans_datetimes_and_row_bounds() -> None:
    schema = DataSchema(columns={"flag": ColumnRule(type="boolean", nullable=True),
                                 "when": ColumnRule(type="datetime")},
                        min_rows=1, max_rows=3)
    good = pd.DataFrame({"flag": ["true", "False", None], "when": ["2024-01-02",
                                                                   "2024-02-03 10:00",
                                                                   "2024-03-04"]})
    assert validate_frame(good, schema).ok
    bad = pd.DataFrame({"flag": ["yes", "1", "0", None], "when": ["2024-01-02", "soon",
                                                                  None, "2024-01-03"]})
    report = validate_frame(bad, schema)
    assert [(f.column, f.check, f.examples) for f in report.failures] == [
        (None, "row_count", ()),
        ("flag", "dtype", ((0, "yes"),)),
        ("when", "dtype", ((1, "soon"),)),
        ("when", "not_nullable", ((2, None),)),
    ]
    assert report.failures[0].message == "4 rows; the schema allows at most 3"


def test_validate_refuses_what_is_not_a_table(schema: DataSchema) -> None:
    with pytest.raises(InvalidInputError, match="pandas DataFrame"):
        validate_frame([{"a": 1}], schema)
    with pytest.raises(InvalidInputError, match="repeats column names"):
        validate_frame(pd.DataFrame([[1, 2]], columns=["a", "a"]), schema)


@pytest.mark.parametrize(("text", "message"), [
    ("columns: [a, b", "not valid YAML: expected ',' or ']'"),
    ("- a\n- b\n", "must be a mapping with a 'columns' key"),
    ("colums: {}\n", "unknown schema key 'colums'; known keys: columns, max_rows"),
    ("columns: {}\n", "the schema has no columns"),
    ("columns:\n  age: double\n", "schema column 'age': expected a mapping of rules"),
    ("columns:\n  age: {type: double, mni: 0}\n",
     "unknown key of schema column 'age': 'mni'; known keys: allowed, max, min, nullable"),
    ("columns:\n  age: {nullable: true}\n", "schema column 'age': key 'type' is required"),
    ("columns:\n  age: {type: float64}\n",
     "schema column 'age': key 'type' must be one of double, long, boolean, string, datetime"),
    ("columns:\n  age: {type: double, nullable: maybe}\n",
     "schema column 'age': key 'nullable' must be true or false, got 'maybe'"),
    ("columns:\n  age: {type: double, min: ten}\n",
     "schema column 'age': key 'min' must be a finite number or null, got 'ten'"),
    ("columns:\n  age: {type: double, min: 5, max: 1}\n", "'min' (5) is above 'max' (1)"),
    ("columns:\n  name: {type: string, max: 3}\n",
     "key 'max' applies to double and long columns, not string"),
    ("columns:\n  answer: {type: string, allowed: [yes, no]}\n",
     "key 'allowed' holds True, which is not a string value (quote it)"),
    ("columns:\n  x: {type: double, allowed: [1.5]}\n",
     "key 'allowed' applies to string and long columns, not double"),
    ("columns:\n  x: {type: long, allowed: [1, 1]}\n", "key 'allowed' repeats a value"),
    ("columns:\n  2019: {type: double}\n", "column name 2019 is not a string; quote it"),
    ("min_rows: -1\ncolumns:\n  x: {type: long}\n", "'min_rows' must be a whole number >= 0"),
    ("min_rows: 5\nmax_rows: 2\ncolumns:\n  x: {type: long}\n", "'min_rows' (5) is above"),
    ("version: 2\ncolumns:\n  x: {type: long}\n", "schema key 'version' must be 1"),
])
def test_bad_schemas_are_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        DataSchema.from_yaml(text)
    assert message in str(caught.value)


def test_schema_files_and_edits_are_checked(tmp_path: Path, schema: DataSchema) -> None:
    with pytest.raises(FileNotFoundInputError):
        DataSchema.load(tmp_path / "missing.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        DataSchema.load(tmp_path / "binary.yaml")
    schema.columns["diagnosis"].type = "text"  # edited in place after construction
    with pytest.raises(InvalidInputError, match="'diagnosis': key 'type' must be one of"):
        validate_frame(_cancer(), schema)
    with pytest.raises(InvalidInputError, match="'min' must be a finite number"):
        DataSchema(columns={"x": ColumnRule(type="double", min=float("nan"))})


# --- diffs ---------------------------------------------------------------------------


def _second_version(path: Path) -> Path:
    frame = _cancer().sample(n=500, random_state=0).sort_index()
    frame = frame.drop(columns=["mean texture"])
    frame["radius ratio"] = frame["mean radius"] / frame["mean perimeter"]  # added
    frame["mean area"] = frame["mean area"].round().astype(int)  # double -> long
    frame["mean radius"] += 2 * frame["mean radius"].std()  # shifted by two sd
    frame.loc[frame.index[:40], "worst area"] = np.nan  # nulls appear
    frame.loc[frame.index[:60], "diagnosis"] = "unclear"  # a new category
    frame.to_csv(path, index=False)
    return path


def test_diff_shows_schema_changes_and_shifts(sqlite_client: Client, cancer_csv: Path,
                                              tmp_path: Path) -> None:
    v1, _ = sqlite_client.datasets.add(cancer_csv, name="cancer")
    v2, _ = sqlite_client.datasets.add(_second_version(tmp_path / "v2.csv"), name="cancer")
    diff = diff_datasets(v1, v2)
    assert diff.changed and not diff.identical
    assert (diff.a, diff.b, diff.rows_a, diff.rows_b) == ("cancer@1", "cancer@2", 569, 500)
    assert diff.added_columns == {"radius ratio": "double"}
    assert diff.removed_columns == {"mean texture": "double"}
    assert diff.retyped_columns == {"mean area": ("double", "long")}
    columns = {c.name: c for c in diff.columns}
    radius = columns["mean radius"]
    assert radius.mean_shift == pytest.approx(2.0, abs=0.15)
    assert radius.psi is not None and radius.psi > 1.0 and radius.shifted
    assert radius.std_ratio == pytest.approx(1.0, abs=0.1)
    assert columns["worst area"].null_rate_b == pytest.approx(40 / 500)
    assert columns["worst area"].reasons[0] == "null rate 0.0% -> 8.0%"
    diagnosis = columns["diagnosis"]
    assert diagnosis.new_values == ("unclear",) and diagnosis.vanished_values == ()
    assert diagnosis.frequency_changes["unclear"] == (0.0, 0.12)
    assert [c.name for c in diff.shifted_columns] == ["mean radius", "worst area",
                                                      "diagnosis"]
    assert not columns["mean smoothness"].shifted
    assert columns["mean smoothness"].psi is not None and columns["mean smoothness"].psi < 0.1

    summary = diff.summary().splitlines()
    assert summary[:5] == ["cancer@1 -> cancer@2: changed.", "rows: 569 -> 500 (-69)",
                           "added columns: radius ratio (double)",
                           "removed columns: mean texture (double)",
                           "retyped columns: mean area (double -> long)"]
    assert "- diagnosis: new values: unclear; PSI" in "\n".join(summary)
    assert summary[-1] == "no shift in 29 other columns"
    body = json.loads(json.dumps(diff.to_dict(), allow_nan=False))
    assert body["changed"] is True and body["retyped_columns"] == {
        "mean area": {"a": "double", "b": "long"}}
    assert body["columns"][0]["column"] == "patient_id"


def test_identical_content_shows_no_change(sqlite_client: Client, cancer_csv: Path,
                                           tmp_path: Path) -> None:
    v1, _ = sqlite_client.datasets.add(cancer_csv, name="cancer")
    copy = tmp_path / "copy.csv"
    copy.write_bytes(cancer_csv.read_bytes())
    twin, _ = sqlite_client.datasets.add(copy, name="cancer-copy")
    for diff in (diff_datasets(v1, twin), diff_datasets(v1, v1)):
        assert not diff.changed and diff.identical and diff.shifted_columns == []
        assert all(c.psi == 0 and c.mean_shift in (0, None) for c in diff.columns)
    assert diff_datasets(v1, twin).summary() == (
        "cancer@1 -> cancer-copy@1: no change (identical content, 569 rows).")


def test_diff_reads_profiles_written_before_percentiles(sqlite_client: Client,
                                                    cancer_csv: Path, tmp_path: Path) -> None:
    v1, _ = sqlite_client.datasets.add(cancer_csv, name="cancer")
    v2, _ = sqlite_client.datasets.add(_second_version(tmp_path / "v2.csv"), name="cancer")
    assert len(v1.profile["columns"]["mean radius"]["percentiles"]) == 15

    def without_percentiles(dv: DatasetVersion) -> DatasetVersion:
        columns = {k: {n: v for n, v in s.items() if n != "percentiles"}
                   for k, s in dv.profile["columns"].items()}
        return dataclasses.replace(dv, profile={**dv.profile, "columns": columns})

    old = diff_datasets(without_percentiles(v1), without_percentiles(v2))
    new = diff_datasets(v1, v2)
    assert [c.name for c in old.shifted_columns] == [c.name for c in new.shifted_columns]
    assert not diff_datasets(without_percentiles(v1), v1).changed


def test_read_version_gives_back_the_data(sqlite_client: Client, cancer_csv: Path) -> None:
    dv, _ = sqlite_client.datasets.add(cancer_csv, name="cancer")
    pd.testing.assert_frame_equal(read_version(sqlite_client.datasets, dv),
                                  read_frame(cancer_csv))
    with pytest.raises(FileNotFoundInputError):
        read_frame(cancer_csv.parent / "nothing.csv")


def test_examples_name_rows_by_the_frame_index() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, None, "x"], "k": ["p", "q", "p", "r"]},
                         index=["r1", "r1", "r2", "r3"])  # labels need not be unique
    schema = DataSchema(columns={"a": ColumnRule(type="double", max=1.5),
                                 "k": ColumnRule(type="string", unique=True)})
    report = validate_frame(frame, schema)
    assert [(f.column, f.check, f.examples) for f in report.failures] == [
        ("a", "dtype", (("r3", "x"),)),
        ("a", "not_nullable", (("r2", None),)),
        ("a", "max(1.5)", (("r1", 2.0),)),
        ("k", "unique", (("r1", "p"), ("r2", "p"))),
    ]

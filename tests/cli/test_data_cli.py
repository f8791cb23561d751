"""`modelhost data infer-schema | validate | diff`: output, --json and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from modelhost.cli import run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    bunch = load_iris(as_frame=True)
    frame = bunch.data.copy()
    frame["species"] = np.asarray(bunch.target_names)[bunch.target]
    path = tmp_path / "iris.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def broken_csv(tmp_path: Path, iris_csv: Path) -> Path:
    text = iris_csv.read_text().splitlines()
    # Row 0 gets a sepal length of 42 (out of range), row 1 a species of 'rose'.
    text[1] = "42" + text[1][text[1].index(","):]
    text[2] = text[2].rsplit(",", 1)[0] + ",rose"
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(text) + "\n")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_infer_schema_then_validate(home: Path, iris_csv: Path, broken_csv: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "data", "infer-schema", iris_csv, "--output", "schema.yaml")
    assert code == 0 and out.strip() == "Wrote a schema of 5 columns to schema.yaml"
    assert "allowed:\n    - setosa" in Path("schema.yaml").read_text()

    code, out, _ = cli(capsys, "data", "validate", iris_csv, "--schema", "schema.yaml")
    assert (code, out.strip()) == (0, "Valid: 150 rows and 5 columns pass every check of "
                                      "the schema.")

    code, out, _ = cli(capsys, "data", "validate", broken_csv, "--schema", "schema.yaml")
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0] == "Invalid: 2 checks failed on 150 rows and 5 columns."
    assert lines[1].startswith("- column 'sepal length (cm)': in_range(4.3, 7.9) failed "
                               "for 1 row") and lines[1].endswith("e.g. row 0: 42.0")
    assert lines[2].endswith("e.g. row 1: 'rose'")

    code, out, _ = cli(capsys, "data", "validate", broken_csv, "-s", "schema.yaml", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["source"] == str(broken_csv)
    assert [(f["column"], f["check"], f["examples"]) for f in report["failures"]] == [
        ("sepal length (cm)", "in_range(4.3, 7.9)", [{"row": 0, "value": 42.0}]),
        ("species", "isin", [{"row": 1, "value": "rose"}]),
    ]


def test_infer_schema_prints_refuses_to_overwrite_and_takes_options(
        home: Path, iris_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "data", "infer-schema", iris_csv, "--categorical-max", "2")
    assert code == 0 and out.startswith("# modelhost data schema")
    assert out.endswith("species:\n    type: string\n    nullable: false\n")
    code, out, _ = cli(capsys, "data", "infer-schema", iris_csv, "--json")
    assert json.loads(out)["columns"]["species"]["allowed"] == ["setosa", "versicolor",
                                                                "virginica"]
    Path("schema.yaml").write_text("keep me")
    code, _, err = cli(capsys, "data", "infer-schema", iris_csv, "-o", "schema.yaml")
    assert code == 4 and err.strip() == ("error: schema.yaml already exists; pass --force "
                                         "to overwrite it")
    assert Path("schema.yaml").read_text() == "keep me"
    code, out, _ = cli(capsys, "data", "infer-schema", iris_csv, "-o", "schema.yaml",
                       "--force", "--json")
    assert code == 0 and json.loads(out)["output"] == "schema.yaml"
    assert Path("schema.yaml").read_text().startswith("# modelhost data schema")


def test_registered_datasets_validate_and_diff(home: Path, iris_csv: Path, broken_csv: Path,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "data", "add", iris_csv, "--name", "iris")[0] == 0
    assert cli(capsys, "data", "add", broken_csv, "--name", "iris")[0] == 0
    assert cli(capsys, "data", "infer-schema", "iris:1", "-o", "schema.yaml")[0] == 0
    assert cli(capsys, "data", "validate", "iris:1", "--schema", "schema.yaml")[0] == 0
    code, out, _ = cli(capsys, "data", "validate", "iris", "--schema", "schema.yaml")
    assert code == 1 and "2 checks failed" in out  # the latest version: iris@2

    code, out, _ = cli(capsys, "data", "diff", "iris", "1", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == ["iris@1 -> iris@2: changed.", "rows: 150 -> 150"]
    assert lines[2].split() == ["COLUMN", "NULL", "RATE", "MEAN", "SHIFT", "(SD)", "PSI",
                                "CHANGE"]
    species = next(ln for ln in lines if ln.strip().startswith("species"))
    assert "new: rose" in species

    code, out, _ = cli(capsys, "data", "diff", "iris:1", "iris@2", "--json")
    body = json.loads(out)
    assert code == 0 and body["changed"] is True and (body["a"], body["b"]) == ("iris@1",
                                                                                "iris@2")
    assert {c["column"]: c["new_values"] for c in body["columns"]}["species"] == ["rose"]

    copy = tmp_path / "copy.csv"
    copy.write_bytes(iris_csv.read_bytes())
    assert cli(capsys, "data", "add", copy, "--name", "iris-copy")[0] == 0
    code, out, _ = cli(capsys, "data", "diff", "iris:1", "iris-copy:1")
    assert code == 0 and out.splitlines()[0] == ("iris@1 -> iris-copy@1: no change "
                                                 "(identical content, 150 rows).")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["data", "validate", "iris.csv", "--schema", "missing.yaml"], 3,
     "error: no such file or folder: 'missing.yaml'"),
    (["data", "validate", "iris.csv", "--schema", "bad.yaml"], 1,
     "error: unknown key of schema column 'species': 'kind'; known keys: allowed, max, min, "
     "nullable, type, unique"),
    (["data", "validate", "nothing.csv", "--schema", "good.yaml"], 3,
     "error: no such file or folder: 'nothing.csv'"),
    (["data", "validate", "nope:1", "--schema", "good.yaml"], 3,
     "error: dataset 'nope' not found; see 'modelhost data versions nope'"),
    (["data", "validate", "Bad Name", "--schema", "good.yaml"], 1,
     "error: invalid dataset name 'Bad Name'"),
    (["data", "infer-schema", "notes.txt"], 1, "error: a dataset is CSV or Parquet files"),
    (["data", "diff", "iris", "one", "2"], 1,
     "error: invalid dataset version 'one': expected a whole number from 1, e.g. 2"),
    (["data", "diff", "iris:1", "iris"], 1,
     "error: 'iris' names no version; use NAME:VERSION (e.g. iris:1), or give NAME A B"),
    (["data", "diff", "iris", "1", "3"], 3, "error: dataset 'iris' version 3 not found"),
    (["data", "diff"], 2, "Missing argument 'NAME'"),
])
def test_errors_are_one_line_with_the_documented_exit_code(
        home: Path, iris_csv: Path, capsys: pytest.CaptureFixture[str],
        args: list[str], code: int, message: str) -> None:
    Path("iris.csv").write_bytes(iris_csv.read_bytes())
    Path("notes.txt").write_text("not data")
    Path("bad.yaml").write_text("columns:\n  species: {type: string, kind: category}\n")
    Path("good.yaml").write_text("columns:\n  species: {type: string}\n")
    assert cli(capsys, "data", "add", "iris.csv", "--name", "iris")[0] == 0
    assert cli(capsys, "data", "add", "iris.csv", "--name", "iris")[0] == 0  # still @1
    got, out, err = cli(capsys, *args)
    assert got == code and message in err
    assert "Traceback" not in err and str(home.parent) not in err + out
    if code != 2:
        assert len(err.strip().splitlines()) == 1

"""``modelhost monitor drift`` and ``modelhost monitor reference``: live windows written
by the workers' profiler (``LiveProfiles``, here with a fixed clock) read against the
version's reference; --json, windows, exit codes, one-line errors."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.fixtures_models import iris, iris_example, iris_model

from modelhost import Client
from modelhost.cli import run
from modelhost.monitoring.profiles import LiveProfiles
from modelhost.stats.profile import Reference

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SHIFTED = ("sepal_width", "petal_length")
SHIFT = {"sepal_width": 2.0, "petal_length": 4.0}  # several standard deviations each


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def training_frame() -> pd.DataFrame:
    X, y = iris()
    return X.assign(target=y)


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{name: frame[name] + by for name, by in SHIFT.items()})


@dataclass
class Answered:
    """What the server's observers see of one answered prediction request."""

    model: str
    version: str
    rows: int
    inputs: Any
    predictions: Any
    status: int = 200
    latency_s: float = 0.003
    at: float = 0.0  # when answered
    arm: Any = None
    request_id: str = ""
    probabilities: Any = None


def record(client: Client, frames: Sequence[pd.DataFrame], *, at: float,
           version: str = "1.0.0") -> None:
    """One request per frame, answered ``at`` (epoch seconds), counted and written as a
    worker's flusher does."""

    def reference(model: str, ref: str) -> Reference | None:
        stored = client.registry.reference(model, ref)
        return Reference.from_dict(stored.profile) if stored is not None else None

    live = LiveProfiles(client.profiles, references=reference, clock=lambda: at)
    model = iris_model()
    for frame in frames:
        inputs = frame[COLUMNS]
        live.observe(Answered("iris", version, len(inputs), inputs, model.predict(inputs),
                              at=at))
    assert live.flush() == len(frames)


def thirds(frame: pd.DataFrame) -> list[pd.DataFrame]:
    return [frame.iloc[i::3] for i in range(3)]


def setup_iris(*, reference: bool = True) -> None:
    """iris 1.0.0 (production, with a reference unless told) and 1.0.1 (no reference)."""
    with Client() as client:
        registry = client.registry
        registry.register(iris_model(), name="iris", input_example=iris_example(),
                          reference_data=training_frame() if reference else None)
        registry.register(iris_model(C=0.5), name="iris", input_example=iris_example())
        registry.transition("iris", "1.0.0", "staging")
        registry.transition("iris", "1.0.0", "production")


def drifted(report: dict[str, Any]) -> set[str]:
    return {f["name"] for f in report["features"] if f["drifted"]}


# --- monitor drift ----------------------------------------------------------------------


def test_drift_names_the_shifted_features(home: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    setup_iris()
    X, _ = iris()
    with Client() as client:
        record(client, thirds(shifted(X)), at=time.time() - 120)
    code, out, err = cli(capsys, "monitor", "drift", "iris", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["model"], report["version"]) == ("iris", "1.0.0")
    assert set(report["window"]) == {"start", "end"}
    assert (report["requests"], report["errors"], report["rows"]) == (3, 0, 150)
    assert report["reference_rows"] == 150
    assert report["reference"]["source"] == "the data given at registration"
    assert report["dataset_drift"] is True and report["drift_share"] == 0.5
    assert [f["name"] for f in report["features"]] == COLUMNS
    assert drifted(report) == set(SHIFTED)
    for feature in report["features"]:
        # A reference of 150 rows: Kolmogorov-Smirnov at p < 0.05, as Evidently does.
        assert (feature["type"], feature["test"], feature["threshold"]) == (
            "numeric", "ks", 0.05)
        assert feature["drifted"] == (feature["p_value"] < 0.05)
        assert feature["rows"] == 150
        assert (feature["out_of_range"] > 0) == (feature["name"] in SHIFTED)
    assert report["prediction"]["test"] == "chisquare"
    assert "message" not in report

    code, out, _ = cli(capsys, "monitor", "drift", "iris")
    assert code == 0
    assert ("iris 1.0.0, last 1h: 3 requests, 150 rows profiled against 150 reference rows "
            "(the data given at registration): DATA DRIFT, 2 of 4 features drifted") in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert lines["COLUMN"][:3] == ["COLUMN", "TEST", "STATISTIC"]
    assert {name: lines[name][4] for name in COLUMNS} == {
        name: "yes" if name in SHIFTED else "no" for name in COLUMNS}
    assert lines["prediction"][1] == "chisquare"


def test_training_like_traffic_does_not_drift(home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    setup_iris()
    X, _ = iris()
    rng = np.random.default_rng(7)
    sample = X.iloc[rng.integers(0, len(X), size=300)]
    with Client() as client:
        record(client, [sample.iloc[i:i + 30] for i in range(0, 300, 30)],
               at=time.time() - 60)
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--version", "@production",
                       "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["requests"], report["rows"]) == (10, 300)
    assert report["dataset_drift"] is False and report["drift_share"] == 0.0
    assert drifted(report) == set()
    assert report["prediction"]["drifted"] is False
    code, out, _ = cli(capsys, "monitor", "drift", "iris")
    assert "no data drift, 0 of 4 features drifted" in out


def test_the_window_chooses_the_traffic(home: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    setup_iris()
    X, _ = iris()
    now = time.time()
    with Client() as client:
        record(client, thirds(shifted(X)), at=now - 3 * 3600)  # three hours ago
        record(client, thirds(X), at=now - 120)  # two minutes ago, another worker
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--window", "1h", "--json")
    recent = json.loads(out)
    assert (code, recent["requests"], recent["rows"]) == (0, 3, 150)
    assert recent["dataset_drift"] is False and drifted(recent) == set()
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--window", "4h", "--json")
    both = json.loads(out)
    assert (code, both["requests"], both["rows"]) == (0, 6, 300)
    assert drifted(both) == set(SHIFTED) and both["dataset_drift"] is True
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--window", "30s", "--json")
    assert (code, json.loads(out)["requests"]) == (0, 0)
    assert json.loads(out)["dataset_drift"] is False  # nothing to compare
    assert all(f["statistic"] is None for f in json.loads(out)["features"])
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--window", "30s")
    assert code == 0
    assert "last 30s: 0 requests, 0 rows profiled against 150 reference rows" in out
    assert "no data drift, 0 of 4 features drifted" in out
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["sepal_width"])
    assert row == ["sepal_width", "ks", "-", "-", "no", "-", "0"]


def test_a_version_without_reference_says_how_to_attach_one(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_iris()
    X, _ = iris()
    with Client() as client:
        record(client, [X.head(4), X.tail(6)], at=time.time() - 30, version="1.0.1")
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--version", "1.0.1", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["reference"] is None and report["reference_rows"] is None
    assert report["requests"] == 2 and report["rows"] == 0
    assert report["features"] == [] and report["prediction"] is None
    assert report["dataset_drift"] is None and report["drift_share"] is None
    assert report["message"] == ("version 1.0.1 has no reference profile: attach one with "
                                 "'modelhost monitor reference iris 1.0.1 --data FILE'")
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--version", "1.0.1")
    assert code == 0
    assert "iris 1.0.1, last 1h: 2 requests, 0 rows profiled." in out
    assert "modelhost monitor reference iris 1.0.1 --data FILE" in out


@pytest.mark.parametrize(("args", "code", "message"), [
    (["monitor", "drift", "nope"], 3,
     "error: model 'nope' not found; see 'modelhost models list'"),
    (["monitor", "drift", "iris", "--version", "9.9.9"], 3,
     "model 'iris' has no version or alias '9.9.9'"),
    (["monitor", "drift", "iris", "--window", "soon"], 1, "'soon' is not a duration"),
    (["monitor", "drift", "iris", "--window", "999999w"], 1, "longer than 100 years"),
    (["monitor", "drift"], 2, "Missing argument"),
    (["monitor", "reference", "iris", "1.0.0"], 2, "Missing option '--data'"),
    (["monitor", "reference", "iris", "9.9.9", "--data", "{train}"], 3,
     "has no version or alias '9.9.9'"),
    (["monitor", "reference", "nope", "1.0.0", "--data", "{train}"], 3,
     "model 'nope' not found"),
    (["monitor", "reference", "iris", "1.0.0", "--data", "missing.csv"], 3, "no such file"),
    (["monitor", "reference", "iris", "1.0.0", "--data", "nope@1"], 3,
     "dataset 'nope' not found"),
    (["monitor", "reference", "iris", "1.0.0", "--data", "{partial}"], 1,
     "lacks 1 column(s) of the signature: petal_width"),
])
def test_errors_have_exit_codes_and_one_line(home: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             args: list[str], code: int, message: str) -> None:
    setup_iris()
    train = tmp_path / "train.csv"
    training_frame().to_csv(train, index=False)
    partial = tmp_path / "partial.csv"
    training_frame().drop(columns=["petal_width"]).to_csv(partial, index=False)
    with Client() as client:
        before = client.registry.reference("iris", "1.0.0")
    argv = [a.format(train=train, partial=partial) for a in args]
    got, _, err = cli(capsys, *argv)
    assert got == code, err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or code == 2
    with Client() as client:  # a refused command changes nothing
        assert client.registry.reference("iris", "1.0.0") == before
        assert client.registry.reference("iris", "1.0.1") is None


def test_without_a_production_version_drift_is_not_found(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Client() as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example(),
                                 reference_data=training_frame())
    code, _, err = cli(capsys, "monitor", "drift", "iris")
    assert code == 3 and "@production" in err and "Traceback" not in err
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--version", "latest", "--json")
    assert code == 0 and json.loads(out)["version"] == "1.0.0"


# --- monitor reference ------------------------------------------------------------------


def test_reference_from_a_file_replaces_and_is_audited(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_iris(reference=False)
    train = tmp_path / "train.csv"
    training_frame().to_csv(train, index=False)
    code, out, err = cli(capsys, "monitor", "reference", "iris", "1.0.0", "--data", train,
                         "--json")
    assert code == 0, err
    body = json.loads(out)
    assert {k: v for k, v in body.items() if k != "digest"} == {
        "model": "iris", "version": "1.0.0", "rows": 150, "features": 4,
        "source": "file train.csv"}
    with Client() as client:
        stored = client.registry.reference("iris", "1.0.0")
        assert stored is not None and stored.digest == body["digest"]
        assert [f["name"] for f in stored.profile["features"]] == COLUMNS  # no target
    # A file whose name holds an '@' is still a file; the alias resolves the version.
    setosa = tmp_path / "setosa@2.csv"
    training_frame().head(50).to_csv(setosa, index=False)
    with Client() as client:
        client.registry.set_alias("iris", "champion", "1.0.0")
    code, out, _ = cli(capsys, "monitor", "reference", "iris", "champion", "--data", setosa)
    assert code == 0
    assert "iris 1.0.0: reference profile from file setosa@2.csv (50 rows, 4 features)" in out
    with Client() as client:
        stored = client.registry.reference("iris", "1.0.0")
        assert stored is not None and (stored.rows, stored.source) == (50, "file setosa@2.csv")
        entries = [e for e in client.audit.list() if e.action == "model.reference"]
        assert [(e.after or {}).get("source") for e in entries] == [
            "file setosa@2.csv", "file train.csv"]
        assert entries[0].before == {"digest": body["digest"], "source": "file train.csv"}
    code, out, _ = cli(capsys, "monitor", "drift", "iris", "--json")
    assert code == 0 and json.loads(out)["reference"]["source"] == "file setosa@2.csv"
    assert json.loads(out)["reference_rows"] == 50


def test_reference_from_a_logged_dataset(home: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    setup_iris(reference=False)
    train = tmp_path / "train.csv"
    training_frame().to_csv(train, index=False)
    assert cli(capsys, "data", "add", train, "--name", "iris-train")[0] == 0
    training_frame().head(90).to_csv(train, index=False)
    assert cli(capsys, "data", "add", train, "--name", "iris-train")[0] == 0
    code, out, _ = cli(capsys, "monitor", "reference", "iris", "1.0.1", "--data",
                       "iris-train@1", "--json")
    assert code == 0
    body = json.loads(out)
    assert (body["version"], body["rows"], body["source"]) == ("1.0.1", 150,
                                                               "dataset iris-train@1")
    code, out, _ = cli(capsys, "monitor", "reference", "iris", "1.0.1", "--data",
                       "iris-train@2", "--json")
    assert code == 0
    assert (json.loads(out)["rows"], json.loads(out)["source"]) == (90, "dataset iris-train@2")
    code, _, err = cli(capsys, "monitor", "reference", "iris", "1.0.1", "--data",
                       "iris-train@3")
    assert code == 3 and "dataset 'iris-train' version 3 not found" in err
    with Client() as client:
        stored = client.registry.reference("iris", "1.0.1")
        assert stored is not None and stored.source == "dataset iris-train@2"

"""The pipeline commands: exit codes, one-line errors, --debug, --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelhost.cli import run
from tests.pipelines.toy import write_toy


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


def test_a_step_that_raises_is_one_line_unless_debug(home: Path, toy_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_toy(toy_dir, train={"fail": True})
    code, out, err = cli(capsys, "pipeline", "run", spec)
    assert code == 1
    assert "train        failed" in out and "ValueError: the learning rate is negative" in out
    assert err == "error: step 'train' failed: ValueError: the learning rate is negative\n"
    code, out, err = cli(capsys, "--debug", "pipeline", "run", spec)
    assert code == 1 and "Traceback (most recent call last)" in err
    assert "validate     skipped (unchanged)" in out  # resumed at the failed step
    code, out, _ = cli(capsys, "pipeline", "run", spec, "--json")
    data = json.loads(out)
    assert code == 1 and data["status"] == "step_failed" and not data["ok"]
    assert [s["status"] for s in data["steps"]] == ["skipped", "skipped", "failed", "not run"]
    assert "traceback" not in json.dumps(data)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["pipeline", "run", "missing.yaml"], 3, "error: no such file or folder: 'missing.yaml'"),
    (["pipeline", "run", "BAD", "--reason", " "], 2, "give a non-empty reason"),
    (["reproduce", "nope", "1.0.0"], 3, "error: model 'nope' not found"),
    (["reproduce", "nope", "1.0.0", "--tolerance", "-1"], 2, "--tolerance"),
])
def test_usage_and_lookup_errors(home: Path, capsys: pytest.CaptureFixture[str],
                                 args: list[str], code: int, message: str) -> None:
    got, _, err = cli(capsys, *args)
    assert got == code and message in err


def test_spec_errors_are_one_line(home: Path, toy_dir: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_toy(toy_dir)
    spec.write_text(spec.read_text().replace("call: steps:train", "call: steps.train"))
    code, out, err = cli(capsys, "pipeline", "run", toy_dir)
    assert code == 1 and out == ""
    assert err.startswith("error: modelhost.yaml: steps.train.call: 'steps.train' must look "
                          "like 'module:function'")
    assert str(toy_dir) not in err and len(err.strip().splitlines()) == 1


def test_run_register_deploy_and_reproduce(home: Path, toy_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_toy(toy_dir, register=True, deploy=True,
                     gates=[{"kind": "threshold", "metric": "accuracy", "min": 0.5}])
    code, out, err = cli(capsys, "pipeline", "run", spec)
    assert code == 0, err
    assert "deploy       ran" in out and "toy 1.0.0 promoted to production (direct)" in out
    assert "passed  accuracy >= 0.5: accuracy = " in out
    code, out, _ = cli(capsys, "models", "show", "toy", "--json")
    assert json.loads(out)["production_version"] == "1.0.0"
    code, out, err = cli(capsys, "reproduce", "toy", "1.0.0", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["mode"] == "in_place"
    assert {m["metric"] for m in report["metrics"]} == {"accuracy", "holdout_rows"}
    (toy_dir / "steps.py").write_text((toy_dir / "steps.py").read_text().replace(
        'ctx.log_metric("accuracy", float(', 'ctx.log_metric("accuracy", 0.01 + float('))
    code, out, err = cli(capsys, "reproduce", "toy", "1.0.0")
    assert code == 1 and "accuracy" in out and "NO" in out
    assert err.startswith("error: 1 of 2 metrics differ by more than the tolerance 1e-06: "
                          "accuracy (+0.01)")

"""The proof: examples/churn end to end through the CLI - a first run that registers and
deploys, a second that skips every unchanged step, a deliberately worse model stopped by
the gates, and corrupted data stopped by validation with a precise report."""

from __future__ import annotations

import json
import re
import runpy
import shutil
from pathlib import Path

import pandas as pd
import pytest

from modelhost.cli import run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
STEPS = ("validate", "features", "train", "evaluate", "gate", "register", "deploy")


@pytest.fixture
def churn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "churn"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(
        "data", ".modelhost-pipeline", "modelhost.lock", "__pycache__"))
    runpy.run_path(str(folder / "steps.py"))["write_data"](folder)
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    return folder


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def versions(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], str | None]:
    code, out, _ = cli(capsys, "models", "show", "churn", "--json")
    assert code == 0
    data = json.loads(out)
    return [v["version"] for v in data["versions"]], data["production_version"]


def step_status(out: str, step: str) -> str:
    match = re.search(rf"^\s+{step}\s+(ran|skipped \(unchanged\)|failed|not run)(?=\s)", out,
                      re.MULTILINE)
    assert match, f"no line for step {step!r} in:\n{out}"
    return match.group(1)


def test_churn_example_end_to_end(churn: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = churn / "modelhost.yaml"
    code, out, err = cli(capsys, "pipeline", "run", spec)
    assert code == 0, out + err
    assert [step_status(out, s) for s in STEPS] == ["ran"] * len(STEPS)
    assert "Data: churn@1 (2,000 rows, new version)" in out
    assert "churn 1.0.0 is in production" in out
    assert versions(capsys) == (["1.0.0"], "1.0.0")

    # Unchanged: every step is skipped, nothing new is registered.
    code, out, err = cli(capsys, "pipeline", "run", spec)
    assert code == 0, out + err
    assert [step_status(out, s) for s in STEPS] == ["skipped (unchanged)"] * len(STEPS)
    assert versions(capsys) == (["1.0.0"], "1.0.0")

    # A retraining trigger: the reason is recorded (machine output this time).
    code, out, _ = cli(capsys, "pipeline", "run", spec, "--reason", "weekly retrain",
                       "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["trigger"] == "retrain"
    assert result["reason"] == "weekly retrain" and result["datasets"][0]["ref"] == "churn@1"
    code, out, _ = cli(capsys, "runs", "show", result["run_id"], "--json")
    assert json.loads(out)["tags"]["pipeline.reason"] == "weekly retrain"

    # The version reproduces from its lineage.
    code, out, err = cli(capsys, "reproduce", "churn", "1.0.0")
    assert code == 0, out + err
    assert re.search(r"roc_auc\s+0\.\d+\s+0\.\d+\s+\+0\s+yes", out)
    assert "Reproduced churn 1.0.0: every metric matches within 1e-06" in out

    # A deliberately worse model: the gates stop it, nothing is registered or deployed.
    good = spec.read_text()
    spec.write_text(good.replace("model: logistic_regression", "model: most_frequent"))
    code, out, err = cli(capsys, "pipeline", "run", spec)
    assert code == 1
    assert step_status(out, "train") == "ran" and step_status(out, "gate") == "failed"
    assert step_status(out, "register") == "not run" == step_status(out, "deploy")
    assert "FAILED  roc_auc >= 0.8: roc_auc = 0.5 is below the minimum 0.8 by 0.3" in out
    assert re.search(r"FAILED  roc_auc not worse than production: roc_auc 0\.5 vs "
                     r"production 1\.0\.0 0\.\d+: worse by 0\.\d+, 0\.\d+ more than the "
                     r"tolerance 0\.01", out)
    assert "passed  latency p99 <= 50 ms" in out
    assert re.search(r"error: \d of 5 gates failed; nothing was registered or deployed", err)
    assert "Traceback" not in out + err
    assert versions(capsys) == (["1.0.0"], "1.0.0")

    # Corrupted data: validation fails with a precise report before any training.
    spec.write_text(good)
    data = pd.read_csv(churn / "data" / "churn.csv")
    data.loc[[2, 5], "tenure_months"] = -3
    data.loc[7, "region"] = "mars"
    data.loc[9, "churned"] = 2
    data.to_csv(churn / "data" / "churn.csv", index=False)
    code, out, err = cli(capsys, "pipeline", "run", spec)
    assert code == 1
    assert step_status(out, "validate") == "failed"
    assert [step_status(out, s) for s in STEPS[1:]] == ["not run"] * 6
    assert "Validation of churn@2 failed" in out
    assert "Invalid: 3 checks failed on 2000 rows and 7 columns." in out
    assert "column 'tenure_months'" in out and "row 2: -3, row 5: -3" in out
    assert "column 'region': isin failed for 1 row" in out and "row 7: 'mars'" in out
    assert "column 'churned': isin failed for 1 row" in out
    assert "error: data validation failed for churn@2; nothing was registered" in err
    assert versions(capsys) == (["1.0.0"], "1.0.0")

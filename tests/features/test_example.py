"""examples/churn-features, run as its README says (the commands for real), then served
in-process: the server's features and predictions are those of the training frame and
the model at the same moment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from modelhost import Client, Settings
from modelhost.features import training_frame
from modelhost.features.sources import read_source
from tests.serving.conftest import serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(folder: Path, home: Path, *command: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
    env.update(MODELHOST_HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    done = subprocess.run(list(command), cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


async def test_the_example_trains_from_the_offline_store_and_serves_from_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "churn-features"
    shutil.copytree(ROOT / "examples" / "churn-features", folder)
    home = tmp_path / "home"
    run(folder, home, "python", "churn_features.py", "data")
    assert "version 1: 1 entities, 2 views, 1 services" in run(
        folder, home, "modelhost", "features", "apply", "features.yaml")
    out = run(folder, home, "modelhost", "features", "materialize")
    assert "activity: 500 keys from 5000 source rows" in out
    out = run(folder, home, "python", "churn_features.py", "train")
    assert "churn 1.0.0 in production, trained on 500 rows of churn_v1" in out

    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))  # the transformation's module, as serve has
    customers = [3, 42, 7, 250]
    with Client(Settings(home=home)) as client:
        repo = client.features.current().repo
        now = pd.read_parquet("data/activity.parquet")["event_timestamp"].max()
        entity = pd.DataFrame({"customer_id": customers, "event_timestamp": now})
        expected = training_frame(entity, repo, "churn_v1", read_source=read_source)
        expected["tickets_30d"] = expected["tickets_30d"].fillna(0).astype("int64")
        X = expected[["sessions_7d", "spend_30d", "tickets_30d"]]
        model_says = client.registry.predict("churn", "1.0.0", X)
        async with serve(client, features=client.features) as (_, http):
            response = await http.post("/v1/models/churn/predict", json={
                "inputs": [{"customer_id": c} for c in customers], "return_features": True})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["features"] == X.to_dict(orient="records")
            assert body["predictions"] == list(model_says.predictions)
            missing = await http.post("/v1/models/churn/predict",
                                      json={"inputs": [{"customer_id": 9999}]})
            assert missing.status_code == 422
            assert "activity:sessions_7d has no value for customer_id=9999" in missing.text

"""``/v1/features``: viewers read the definitions, freshness and online values; deployers
apply; every refusal has its status and message, and changes nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from modelhost import Client, Settings
from modelhost.serving import PoolOptions
from tests.features.test_materialize_cli import DEFINITIONS, T0
from tests.serving.conftest import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_feature_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [T0, T0],
                  "orders_7d": [3, 9], "spend_30d": [10.0, 90.0]}
                 ).to_parquet(tmp_path / "customer_stats.parquet")
    with Client(Settings(home=tmp_path / "home")) as client:
        def bearer(role: str) -> dict[str, str]:
            return {"authorization": f"Bearer {client.keys.create(name=role, role=role).secret}"}

        viewer, deployer, predictor = bearer("viewer"), bearer("deployer"), bearer("predictor")
        async with serve(client, features=client.features, auth=True,
                         pool=PoolOptions(reload_interval_s=3600.0)) as (_, http):
            response = await http.get("/v1/features", headers=viewer)
            assert response.status_code == 404
            assert "no feature definitions" in response.json()["error"]["message"]
            # Only a deployer applies; YAML or JSON.
            response = await http.post("/v1/features", content=DEFINITIONS, headers={
                **viewer, "content-type": "application/yaml"})
            assert response.status_code == 403
            response = await http.post("/v1/features", content=DEFINITIONS, headers={
                **deployer, "content-type": "application/yaml"})
            assert response.status_code == 201 and response.json()["version"] == 1
            current = (await http.get("/v1/features", headers=viewer)).json()
            assert current["version"] == 1 and current["feature_services"][0]["name"] == (
                "churn_v1")
            body = {k: current[k] for k in ("entities", "feature_views", "feature_services")}
            response = await http.post("/v1/features", json=body, headers=deployer)
            assert response.status_code == 200 and response.json()["changed"] is False
            # Bad definitions: 422 naming the entry, nothing stored.
            body["feature_views"][0]["ttl"] = "sometime"
            response = await http.post("/v1/features", json=body, headers=deployer)
            assert response.status_code == 422
            assert "feature_views[0].ttl" in response.json()["error"]["message"]
            response = await http.post("/v1/features", content=b"{nope", headers={
                **deployer, "content-type": "application/json"})
            assert response.status_code == 400
            response = await http.post("/v1/features", json=[1], headers=deployer)
            assert response.status_code == 422
            assert (await http.get("/v1/features", headers=viewer)).json()["version"] == 1
            assert (await http.get("/v1/features?version=7", headers=viewer)).status_code == 404

            client.features.materialize(end=(T0 + pd.Timedelta(days=1)).to_pydatetime())
            fresh = (await http.get("/v1/features/freshness", headers=viewer)).json()
            assert fresh["views"][0]["view"] == "customer_stats"
            assert fresh["views"][0]["rows"] == 2
            # The age of each view's online values, for Prometheus.
            metrics = (await http.get("/metrics", headers=viewer)).text
            series = 'modelhost_feature_freshness_seconds{view="customer_stats"}'
            line = next(x for x in metrics.splitlines() if x.startswith(series))
            age = float(line.split()[-1])
            expected = time.time() - (T0 + pd.Timedelta(days=1)).timestamp()
            assert expected - 60 < age <= expected + 1
            response = await http.post("/v1/features/services/churn_v1/online", headers=predictor,
                                       json={"entities": [{"customer_id": 2},
                                                          {"customer_id": 5}]})
            assert response.status_code == 200
            rows = response.json()["rows"]
            assert rows[0]["entity"] == {"customer_id": 2}
            assert rows[0]["stale"] == ["customer_stats:orders_7d", "customer_stats:spend_30d"]
            assert rows[1]["missing"] == ["customer_stats:orders_7d", "customer_stats:spend_30d"]
            for bad, status, said in (
                    ({"entities": []}, 422, "entities"),
                    ({"entities": [{"customer_id": 1}], "more": 1}, 422, "more"),
                    ({"entities": [{"region": 1}]}, 422, "join key 'customer_id'")):
                response = await http.post("/v1/features/services/churn_v1/online",
                                           json=bad, headers=viewer)
                assert response.status_code == status and said in response.text
            response = await http.post("/v1/features/services/nope/online", headers=viewer,
                                       json={"entities": [{"customer_id": 1}]})
            assert response.status_code == 422 and "no feature service 'nope'" in response.text
            assert (await http.get("/v1/features")).status_code == 401
        actions = [e.action for e in client.audit.list(limit=20)]
        assert actions.count("features.apply") == 1

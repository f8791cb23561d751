"""``modelhost features materialize|get``: the online store filled from a source and read
back as serving reads it, on SQLite and on Redis, with the audit entry and bad input."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis

from modelhost import Client, Settings
from tests.features.test_apply import cli
from tests.services import require_redis

T0 = pd.Timestamp("2026-11-01", tz="UTC")
DEFINITIONS = """
entities:
  - {name: customer, join_keys: [customer_id]}
feature_views:
  - name: customer_stats
    entities: [customer]
    ttl: 2d
    schema: [{name: orders_7d, dtype: long}, {name: spend_30d, dtype: double}]
    source: {path: customer_stats.parquet, timestamp_field: event_timestamp}
feature_services:
  - {name: churn_v1, features: [customer_stats]}
"""


@pytest.fixture(params=["sqlite", "redis"])
def home(request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # a source's relative path is read from here
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS", "MODELHOST_SERVER",
                "MODELHOST_FEATURES_ONLINE"):
        monkeypatch.delenv(var, raising=False)
    client = None
    if request.param == "redis":
        url = require_redis().rsplit("/", 1)[0] + "/15"  # its own database, emptied
        client = redis.Redis.from_url(url)
        client.flushdb()
        monkeypatch.setenv("MODELHOST_FEATURES_ONLINE", url)
    (tmp_path / "features.yaml").write_text(DEFINITIONS)
    pd.DataFrame({"customer_id": [1, 1, 2, 3],
                  "event_timestamp": [T0, T0 + pd.Timedelta(days=1), T0,
                                      T0 + pd.Timedelta(days=3)],
                  "orders_7d": [3, 5, 9, 1], "spend_30d": [10.0, 20.5, 90.0, 1.0]}
                 ).to_parquet(tmp_path / "customer_stats.parquet")
    yield tmp_path / "home"
    if client is not None:
        client.flushdb()
        client.close()


def test_materialize_then_get(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "features", "apply", "features.yaml")[0] == 0
    code, out, _ = cli(capsys, "features", "materialize", "--end", "2026-11-02T12:00:00+00:00")
    assert code == 0, out
    assert out.strip() == ("customer_stats: 2 keys from 3 source rows up to 2026-11-02 "
                           "12:00:00 UTC in " + out.split(" in ")[-1].strip())
    code, out, _ = cli(capsys, "features", "materialize", "--json")  # from there to now
    summary = json.loads(out)["views"][0]
    assert code == 0 and (summary["start"], summary["keys"], summary["source_rows"]) == (
        "2026-11-02T12:00:00+00:00", 1, 1)

    code, out, _ = cli(capsys, "features", "get", "churn_v1", "--entity", "customer_id=1",
                       "--entity", "customer_id=7", "--json")
    assert code == 0
    rows = json.loads(out)["rows"]
    # Customer 1's values are weeks old by now (TTL 2 days): stale; customer 7 has none.
    assert rows[0] == {"entity": {"customer_id": 1},
                       "values": {"orders_7d": None, "spend_30d": None}, "missing": [],
                       "stale": ["customer_stats:orders_7d", "customer_stats:spend_30d"]}
    assert rows[1]["missing"] == ["customer_stats:orders_7d", "customer_stats:spend_30d"]
    code, out, _ = cli(capsys, "features", "get", "churn_v1", "--entity", "customer_id=2")
    assert code == 0 and "NOT FRESH" in out and "stale: customer_stats" in out

    with Client(Settings(home=home)) as client:
        entries = [e for e in client.audit.list(limit=10)
                   if e.action == "features.materialize"]
        assert len(entries) == 2 and entries[-1].after["views"][0]["keys"] == 2
        fresh = client.features.freshness()["customer_stats"]
        assert fresh.latest_event == (T0 + pd.Timedelta(days=3)).to_pydatetime()
        # Read as of a moment inside the TTL: the values serving would use.
        (row,) = client.features.get_online(
            "churn_v1", [{"customer_id": 1}],
            now=(T0 + pd.Timedelta(days=2)).to_pydatetime())
        assert row.values == {"orders_7d": 5, "spend_30d": 20.5} and not row.stale


def test_bad_input_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "features", "materialize")[0] == 3  # nothing applied yet
    assert cli(capsys, "features", "apply", "features.yaml")[0] == 0
    code, _, err = cli(capsys, "features", "materialize", "--start", "yesterday")
    assert code == 1 and "--start takes an ISO 8601 time" in err
    code, _, err = cli(capsys, "features", "materialize", "--view", "nope")
    assert code == 1 and "no feature view 'nope'" in err
    code, _, err = cli(capsys, "features", "get", "churn_v1", "--entity", "customer_id")
    assert code == 1 and "KEY=VALUE" in err
    code, _, err = cli(capsys, "features", "get", "churn_v1", "--entity", "account=1")
    assert code == 1 and "the join key 'customer_id' is missing" in err
    code, _, err = cli(capsys, "features", "get", "nope", "--entity", "customer_id=1")
    assert code == 1 and "no feature service 'nope'" in err
    Path("customer_stats.parquet").unlink()
    code, _, err = cli(capsys, "features", "materialize")
    assert code == 3 and "customer_stats.parquet" in err
    assert "Traceback" not in err
    with Client(Settings(home=home)) as client:
        assert client.features.freshness() == {}
        assert not [e for e in client.audit.list(limit=10)
                    if e.action == "features.materialize"]


def test_a_prefix_keeps_two_installations_apart() -> None:
    from modelhost.features.online_redis import RedisOnlineStore

    url = require_redis()
    a = RedisOnlineStore(url, prefix=f"mhtest:{uuid.uuid4().hex}:")
    b = RedisOnlineStore(url, prefix=f"mhtest:{uuid.uuid4().hex}:")
    try:
        a.write("v", [("[1]", 1.0, b"{}")])
        assert b.read([("v", "[1]")]) == [None]
    finally:
        client = redis.Redis.from_url(url)
        client.delete(f"{a._prefix}v:[1]")
        client.close()
        a.close()
        b.close()

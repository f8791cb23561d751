"""Feature views whose source is a table of the offline database: the registry's SQLite
by default, or a real PostgreSQL. Training frames and materialized values are those of
the same rows read from Parquet; bad tables and columns are named."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine

from modelhost import Client, Settings
from modelhost.errors import InvalidInputError, StoreUnavailableError
from modelhost.features import parse_repo, training_frame
from modelhost.features.definitions import repo_to_dict
from tests.features.test_online import DEFINITIONS, T0, generated
from tests.services import fresh_postgres_database

AS_TABLE = DEFINITIONS.replace("source: {path: PATH,", "source: {table: TABLE,")


@pytest.fixture(params=["sqlite", "postgresql"])
def offline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None  # the registry's own database
        return
    with fresh_postgres_database("mh_feature_tables") as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_a_table_gives_what_the_same_rows_in_parquet_give(
        offline: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stats = generated(5)
    stats.to_parquet("stats.parquet")
    pd.DataFrame({"customer_id": [1], "event_timestamp": [T0], "tier": ["gold"]}
                 ).to_csv("profile.csv", index=False)
    settings = Settings(home=tmp_path / "home", features_offline_db=offline)
    with Client(settings) as client:
        engine = create_engine(offline or client.settings.resolved_db_url)
        stats.to_sql("customer_stats", engine, index=False)
        engine.dispose()
        tables = client.features.apply(AS_TABLE.replace("TABLE", "customer_stats")
                                       .replace("PROFILE", "profile.csv"))
        assert repo_to_dict(tables.repo)["feature_views"][0]["source"]["table"] == (
            "customer_stats")
        files = parse_repo(DEFINITIONS.replace("PATH", "stats.parquet")
                           .replace("PROFILE", "profile.csv"))
        labels = stats[["customer_id", "region"]].drop_duplicates().head(60).assign(
            event_timestamp=T0 + pd.Timedelta(days=4))
        from_table = training_frame(labels, tables.repo, "churn",
                                    read_source=client.features.read_source)
        from_files = training_frame(labels, files, "churn",
                                    read_source=client.features.read_source)
        pd.testing.assert_frame_equal(from_table, from_files)
        assert from_table["orders"].notna().sum() > 20

        end = (T0 + pd.Timedelta(days=6)).to_pydatetime()
        (stats_done, _) = client.features.materialize(end=end)
        assert stats_done.keys == stats[stats["event_timestamp"] <= end][
            ["customer_id", "region"]].drop_duplicates().shape[0]
        rows = client.features.get_online("churn", labels.to_dict(orient="records"),
                                          now=end)
        expected = training_frame(labels.assign(event_timestamp=end), files, "churn",
                                  read_source=client.features.read_source)
        assert [r.values["orders"] for r in rows] == [
            None if pd.isna(v) else int(v) for v in expected["orders"]]


def test_bad_tables_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"customer_id": [1], "event_timestamp": [T0], "tier": ["gold"]}
                 ).to_csv("profile.csv", index=False)
    with Client(Settings(home=tmp_path / "home")) as client:
        for bad in ("a b", "x;drop table models", "1st", "a.b.c"):
            with pytest.raises(InvalidInputError, match=r"source.table must be a table name"):
                client.features.apply(AS_TABLE.replace("TABLE", json.dumps(bad))
                                      .replace("PROFILE", "profile.csv"))
        with pytest.raises(InvalidInputError, match=r"one of path .files. or table"):
            client.features.apply(AS_TABLE.replace("TABLE", "t, path: x.parquet")
                                  .replace("PROFILE", "profile.csv"))
        client.features.apply(AS_TABLE.replace("TABLE", "nowhere")
                              .replace("PROFILE", "profile.csv"))
        end = dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc)
        with pytest.raises(InvalidInputError, match="no table 'nowhere' in the offline"):
            client.features.materialize(views=["stats"], end=end)
        engine = create_engine(client.settings.resolved_db_url)
        generated(1).drop(columns=["created"]).to_sql("nowhere", engine, index=False)
        engine.dispose()
        with pytest.raises(InvalidInputError, match=r"its source has no column.*'created'"):
            client.features.materialize(views=["stats"], end=end)
        assert client.features.freshness() == {}
    # The offline database's own setting is named, and a server that does not answer
    # is said so, without its URL.
    for url, error, said in (
            ("not a url", InvalidInputError,
             "MODELHOST_FEATURES_OFFLINE_DB is not a valid database URL"),
            ("postgresql+psycopg://postgres:secret@127.0.0.1:1/test", StoreUnavailableError,
             "the offline database is unavailable: cannot connect to the database server")):
        with Client(Settings(home=tmp_path / "home", features_offline_db=url)) as client, \
                pytest.raises(error, match=said) as caught:
            client.features.materialize(views=["stats"], end=end)
        assert "secret" not in caught.value.message

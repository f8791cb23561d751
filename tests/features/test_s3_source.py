"""A feature view whose source is on S3 (a real S3 API, moto's server): a glob of Parquet
files read for a training frame and materialized, with the endpoint and credentials
from the standard AWS settings, as the artifact store reads its own."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelhost import Client, Settings
from modelhost.features import training_frame
from tests.artifacts.conftest import moto_endpoint, s3_bucket  # noqa: F401 - fixtures
from tests.features.test_online import DEFINITIONS, T0, generated


def test_a_glob_of_parquet_files_on_s3(s3_bucket: tuple[Any, str], moto_endpoint: str,  # noqa: F811
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client_s3, bucket = s3_bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.chdir(tmp_path)
    stats = generated(3)
    for i, part in enumerate((stats.iloc[:1500], stats.iloc[1500:])):
        buffer = io.BytesIO()
        part.to_parquet(buffer)
        client_s3.put_object(Bucket=bucket, Key=f"stats/part-{i}.parquet",
                             Body=buffer.getvalue())
    client_s3.put_object(Bucket=bucket, Key="stats/_SUCCESS", Body=b"")
    pd.DataFrame({"customer_id": [1], "event_timestamp": [T0], "tier": ["gold"]}
                 ).to_csv("profile.csv", index=False)
    stats.to_parquet("stats.parquet")
    with Client(Settings(home=tmp_path / "home")) as client:
        on_s3 = client.features.apply(DEFINITIONS.replace("PATH", f"s3://{bucket}/stats/")
                                      .replace("PROFILE", "profile.csv")).repo
        labels = stats[["customer_id", "region"]].drop_duplicates().head(50).assign(
            event_timestamp=T0 + pd.Timedelta(days=5))
        from_s3 = training_frame(labels, on_s3, "churn",
                                 read_source=client.features.read_source)
        local = client.features.apply(DEFINITIONS.replace("PATH", "stats.parquet")
                                      .replace("PROFILE", "profile.csv")).repo
        from_disk = training_frame(labels, local, "churn",
                                   read_source=client.features.read_source)
        pd.testing.assert_frame_equal(from_s3, from_disk)
        client.features.apply(DEFINITIONS.replace("PATH", f"s3://{bucket}/stats/*.parquet")
                              .replace("PROFILE", "profile.csv"))
        (done, _) = client.features.materialize(
            end=(T0 + pd.Timedelta(days=20)).to_pydatetime())
        assert done.source_rows == len(stats) and done.keys == len(
            stats[["customer_id", "region"]].drop_duplicates())

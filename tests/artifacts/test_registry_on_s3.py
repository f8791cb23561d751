"""The whole registry on an S3 artifact store (a real S3 API served by moto on loopback),
configured the way users do it: MODELHOST_ARTIFACTS=s3://... plus the standard AWS
environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelhost import Client, Settings
from modelhost.errors import ArtifactCorruptedError
from tests.fixtures_models import iris_example, iris_model


def test_register_and_load_through_s3(s3_bucket: tuple[Any, str], moto_endpoint: str,
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s3, bucket = s3_bucket
    settings = Settings(home=tmp_path / "home", artifacts=f"s3://{bucket}/modelhost")
    with Client(settings) as client:
        mv = client.registry.register(iris_model(), name="iris", input_example=iris_example())
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys and all(k.startswith("modelhost/sha256/") for k in keys)
        loaded = client.registry.load("iris", mv.version)
        assert np.array_equal(loaded.model.predict(iris_example()),
                              iris_model().predict(iris_example()))
        manifest = f"modelhost/sha256/{mv.artifact_digest[:2]}/{mv.artifact_digest}"
        blob = next(k for k in keys if k != manifest)
        s3.put_object(Bucket=bucket, Key=blob, Body=b"tampered")
        with pytest.raises(ArtifactCorruptedError):
            client.registry.load("iris", mv.version)

"""The whole registry on an S3 artifact store (a real S3 API served by moto on loopback),
configured the way users do it: MODELHOST_ARTIFACTS=s3://... plus the standard AWS
environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from modelhost import Client, Settings
from modelhost.errors import ArtifactCorruptedError, InvalidInputError
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


def test_server_side_encryption_passes_through(s3_bucket: tuple[Any, str], moto_endpoint: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """MODELHOST_ARTIFACTS_OPTIONS reaches the S3 filesystem: every object is written with
    the server-side encryption it asks for."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MODELHOST_ARTIFACTS_OPTIONS", json.dumps(
        {"s3_additional_kwargs": {"ServerSideEncryption": "aws:kms",
                                  "SSEKMSKeyId": "alias/modelhost"}}))
    s3, bucket = s3_bucket
    settings = Settings(home=tmp_path / "home", artifacts=f"s3://{bucket}/modelhost")
    with Client(settings) as client:
        mv = client.registry.register(iris_model(), name="iris", input_example=iris_example())
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert len(keys) >= 2  # the model's files and the manifest
        for key in keys:
            head = s3.head_object(Bucket=bucket, Key=key)
            assert head["ServerSideEncryption"] == "aws:kms", key
            assert head["SSEKMSKeyId"].endswith("alias/modelhost"), key
        assert client.registry.load("iris", mv.version).model is not None


@pytest.mark.parametrize(("options", "message"), [
    ("{'single': 'quotes'}", "not valid JSON"),
    ('["a list"]', "give a JSON object"),
])
def test_storage_options_that_are_not_a_json_object_are_refused(
        options: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELHOST_ARTIFACTS_OPTIONS", options)
    with pytest.raises(ValidationError) as caught:
        Settings(home=tmp_path)
    assert message in str(caught.value)
    assert "quotes" not in str(caught.value) and "a list" not in str(caught.value)


def test_storage_options_for_a_local_folder_are_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, artifacts_options=json.dumps({"anon": True}))
    with pytest.raises(InvalidInputError, match="for an object store"):
        Client(settings)

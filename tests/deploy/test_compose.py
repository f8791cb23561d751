"""`deploy/docker-compose.yml`: valid against the Compose Specification's JSON schema (no
compose implementation installs here), two modelhost replicas on the shipped Dockerfile
with PostgreSQL, Redis, an S3 store, Prometheus and Grafana, and every file it mounts
present and valid (Prometheus' configuration checked by promtool)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


def test_the_compose_file_follows_the_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()),
                    key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    # And the validator does catch a broken file.
    broken = compose()
    broken["services"]["modelhost"]["portz"] = ["8000:8000"]  # a misspelt key
    assert any("portz" in e.message
               for e in jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_it_runs_the_whole_stack() -> None:
    services = compose()["services"]
    assert {"modelhost", "postgres", "redis", "minio", "prometheus", "grafana"} <= set(services)
    modelhost = services["modelhost"]
    assert modelhost["deploy"]["replicas"] == 2
    assert (DEPLOY / modelhost["build"]["context"] / modelhost["build"]["dockerfile"]).is_file()
    environment = modelhost["environment"]
    assert environment["MODELHOST_DB_URL"].startswith("postgresql+psycopg://")
    assert environment["MODELHOST_ARTIFACTS"].startswith("s3://")
    assert environment["MODELHOST_REDIS_URL"].startswith("redis://")
    assert environment["MODELHOST_AUTH"] == "required"
    assert modelhost["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts a missing {source}"


def test_the_mounted_configuration_is_valid() -> None:
    for path in (DEPLOY / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed; 'make system-deps' installs it")
    done = subprocess.run([promtool, "check", "config",
                           str(DEPLOY / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

"""Typed configuration, read from ``MODELHOST_*`` environment variables.

Built once at an entry point (CLI, Client, server) and passed down; nothing else in the
package reads the environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # Inputs stay out of error messages: settings hold secrets (keys, URLs with passwords).
    model_config = SettingsConfigDict(env_prefix="MODELHOST_", extra="ignore",
                                      hide_input_in_errors=True)

    home: Path = Field(default=Path(".modelhost"),
                       description="where the embedded database and artifacts live")
    db_url: str | None = Field(default=None,
                               description="SQLAlchemy URL; default sqlite:///$HOME/modelhost.db")
    artifacts: str | None = Field(default=None,
                                  description="artifact store URI; default $HOME/artifacts")
    artifacts_options: SecretStr | None = Field(
        default=None, description="a JSON object of fsspec storage options for an "
                                  "s3:// (gs://, az://) artifact store, e.g. server-side "
                                  "encryption: {\"s3_additional_kwargs\": "
                                  "{\"ServerSideEncryption\": \"aws:kms\"}}")
    redis_url: str | None = None
    features_offline_db: str | None = Field(
        default=None, description="the database feature views with a table source are "
                                  "read from (a SQLAlchemy URL); default the registry's")
    features_online: str | None = Field(
        default=None, description="the feature online store: redis://HOST:PORT/DB to share "
                                  "it across replicas, or a SQLite file; default "
                                  "$HOME/features-online.db")
    console_secret: SecretStr | None = Field(
        default=None, description="signs the web console's sessions; the same on every "
                                  "replica (default: a random one kept in "
                                  "$HOME/console-secret)")
    encryption_key: SecretStr | None = Field(
        default=None, description="encrypt artifacts at rest with this key (32 bytes, "
                                  "URL-safe base64: modelhost artifacts new-key)")
    encryption_old_keys: SecretStr | None = Field(
        default=None, description="comma-separated earlier keys, still read while "
                                  "rotating (modelhost artifacts rotate-key)")
    db_busy_timeout_s: float = Field(default=5.0, gt=0,
                                     description="how long SQLite waits for a lock")
    db_connect_timeout_s: float = Field(default=5.0, gt=0,
                                        description="how long to wait for a database server")
    trust_pickle: bool = Field(default=False,
                               description="allow loading pickle-family artifacts")

    # serving
    serve_model: str | None = Field(default=None,
                                    description="serve only this model (MLflow-style)")
    max_batch_size: int = Field(default=64, ge=1, le=100_000,
                                description="rows per model call after batching")
    max_wait_ms: float = Field(default=2.0, ge=0, le=1000,
                               description="longest wait for a batch to fill under load")
    max_queue_rows: int = Field(default=4096, ge=1,
                                description="rows queued per version before 503")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024,
                                description="largest request body, also after gzip")
    max_upload_bytes: int = Field(default=1024 ** 3, ge=1024,
                                  description="largest model upload, also unpacked")
    max_rows: int = Field(default=10_000, ge=1, description="most rows in one request")
    request_timeout_s: float = Field(default=30.0, gt=0,
                                     description="deadline of a prediction request")
    reload_interval_s: float = Field(default=2.0, gt=0,
                                     description="how often workers re-read routing")

    # security
    auth: Literal["required", "off"] | None = Field(
        default=None, description="API keys and roles; default: required unless the server "
                                  "binds to loopback")
    public_metrics: bool = Field(default=False, description="serve /metrics without a key")
    rate_limit: float | None = Field(default=None, gt=0,
                                     description="requests/s per key without its own limit")
    cors_origins: str | None = Field(default=None,
                                     description="comma-separated origins; CORS off if unset")
    ssl_certfile: Path | None = Field(default=None,
                                      description="PEM certificate (chain): serve HTTPS")
    ssl_keyfile: Path | None = Field(default=None,
                                     description="PEM private key of the certificate")

    # monitoring
    prediction_log: bool = Field(default=True,
                                 description="log answered predictions for feedback")
    prediction_log_sample: float = Field(default=1.0, gt=0, le=1,
                                         description="share of requests logged")
    prediction_log_max_per_s: float = Field(default=1000.0, gt=0,
                                            description="most requests logged per second "
                                                        "and worker")
    prediction_log_retention_days: int = Field(default=30, ge=1, le=3650,
                                               description="days predictions and feedback "
                                                           "are kept")
    monitor_flush_s: float = Field(default=2.0, gt=0, le=60,
                                   description="how often workers write their log and "
                                               "live profiles")
    monitor_profiles: bool = Field(default=True,
                                   description="profile live traffic for drift")
    monitor_retention_days: int = Field(default=30, ge=1, le=3650,
                                        description="days hourly live profiles are kept "
                                                    "(minute ones: two days)")
    alerts: bool = Field(default=True, description="evaluate alert rules in the server")
    alerts_interval_s: float = Field(default=30.0, ge=1, le=3600,
                                     description="how often alert rules are evaluated")
    monitor_metrics_window_s: float = Field(
        default=3600.0, ge=60, le=30 * 86400,
        description="the window of the drift and live-quality gauges on /metrics")
    jobs: bool = Field(default=True, description="run asynchronous prediction jobs in "
                                                 "the server's processes")
    jobs_concurrency: int = Field(default=1, ge=1, le=64,
                                  description="jobs run at once by each server process")
    jobs_lease_s: float = Field(default=30.0, ge=1, le=3600,
                                description="how long a job stays its process's without "
                                            "a renewal (then another process runs it)")
    jobs_max_attempts: int = Field(default=3, ge=1, le=100,
                                   description="runs of a job whose process died before "
                                               "it is failed")
    pipelines_dir: Path | None = Field(default=None,
                                       description="the folder whose pipeline files alert "
                                                   "rules may run")
    rollouts: bool = Field(default=True,
                           description="advance rollouts (canary steps, A/B decisions) in "
                                       "the server")
    rollout_interval_s: float = Field(default=5.0, ge=0.1, le=3600,
                                      description="how often the rollout controller looks at "
                                                  "running rollouts")
    streams: SecretStr | None = Field(
        default=None, description="streams every server process scores: a JSON list of "
                                  "{\"model\", \"source\", \"sink\"} objects (and "
                                  "dead_letter, group, batch, max_attempts, claim_idle_s, "
                                  "from_now), as the options of modelhost stream; kept "
                                  "secret (URLs may hold passwords)")

    @property
    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'modelhost.db').as_posix()}"

    @property
    def resolved_artifacts(self) -> str:
        return self.artifacts or str(self.home / "artifacts")

    @field_validator("artifacts_options")
    @classmethod
    def _options_are_a_json_object(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value: it may hold credentials.
        if value is not None:
            try:
                parsed = json.loads(value.get_secret_value())
            except ValueError:
                raise ValueError("not valid JSON (give a JSON object)") from None
            if not isinstance(parsed, dict):
                raise ValueError("give a JSON object, such as {\"s3_additional_kwargs\": "
                                 "{\"ServerSideEncryption\": \"AES256\"}}")
        return value

    @field_validator("console_secret")
    @classmethod
    def _console_secret_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("give at least 16 characters, such as the output of "
                             "'python -c \"import secrets; print(secrets.token_urlsafe(32))\"'")
        return value

    @field_validator("streams")
    @classmethod
    def _streams_are_a_json_list(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parsed = json.loads(value.get_secret_value())
            except ValueError:
                raise ValueError("not valid JSON (give a JSON list of objects)") from None
            if not isinstance(parsed, list) or not all(isinstance(s, dict) for s in parsed):
                raise ValueError("give a JSON list of objects, such as [{\"model\": "
                                 "\"churn\", \"source\": \"redis://host:6379/events\", "
                                 "\"sink\": \"redis://host:6379/scores\"}]")
        return value

    @property
    def artifact_storage_options(self) -> dict[str, Any] | None:
        """MODELHOST_ARTIFACTS_OPTIONS as the fsspec storage options it holds."""
        if self.artifacts_options is None:
            return None
        parsed: dict[str, Any] = json.loads(self.artifacts_options.get_secret_value())
        return parsed

"""SQLAlchemy 2 tables of the metadata store.

The schema itself is owned by the Alembic migrations in ``store/migrations``; these
classes must match them (a test compares the two).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


def _tz() -> DateTime:
    return DateTime(timezone=True)


# --- registry -------------------------------------------------------------------------


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(_tz())
    updated_at: Mapped[dt.datetime] = mapped_column(_tz())


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "major", "minor", "patch", name="uq_model_versions_semver"),
        # Exactly one production version per model, enforced by the database itself so
        # that two concurrent promotions cannot both win.
        Index("uq_model_versions_one_production", "model_id", unique=True,
              sqlite_where=text("stage = 'production'"),
              postgresql_where=text("stage = 'production'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    flavor: Mapped[str] = mapped_column(String(32))
    flavor_meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    stage: Mapped[str] = mapped_column(String(16), default="none")
    artifact_digest: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    input_example: Mapped[Any] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    sunset: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(_tz())


class VersionDatasetRow(Base):
    """Lineage: which dataset versions a model version was trained or evaluated on."""

    __tablename__ = "model_version_datasets"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="RESTRICT"), primary_key=True)


class AliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(_tz())


class StageHistoryRow(Base):
    __tablename__ = "stage_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    from_stage: Mapped[str] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(_tz())


class ModelTagRow(Base):
    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class VersionTagRow(Base):
    __tablename__ = "model_version_tags"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RoutingRevisionRow(Base):
    """One row (id 1): a number bumped by every change of what is served (stage, alias,
    model tags, sunset, a new model), so that servers poll it instead of the registry."""

    __tablename__ = "routing_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger)


# --- tracking -------------------------------------------------------------------------


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(_tz())


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[dt.datetime] = mapped_column(_tz())
    end_time: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RunParamRow(Base):
    __tablename__ = "run_params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunMetricRow(Base):
    __tablename__ = "run_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[dt.datetime] = mapped_column(_tz())


class RunTagRow(Base):
    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunArtifactRow(Base):
    __tablename__ = "run_artifacts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    path: Mapped[str] = mapped_column(String(500), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


class RunDatasetRow(Base):
    __tablename__ = "run_datasets"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="RESTRICT"), primary_key=True)


# --- datasets -------------------------------------------------------------------------


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(_tz())


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_version"),
        UniqueConstraint("dataset_id", "digest", name="uq_dataset_versions_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    n_rows: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(_tz())


# --- security -------------------------------------------------------------------------


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # also the lookup prefix
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    models: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    rate_limit: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(_tz())
    expires_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)


class AuditRow(Base):
    """One entry of the append-only, hash-chained audit log (see store/audit.py)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(_tz())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(300), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


# --- monitoring -----------------------------------------------------------------------


class PredictionChunkRow(Base):
    """Up to a few hundred logged requests of one model version, written by one flush:
    their ids, times, rows and arms (``entries``), their validated inputs and their
    outputs, each a JSON array with one item per request, and the float64 rows of
    tabular inputs as one binary array (``table``). One row per flushed batch
    instead of one per request keeps the log's cost on the serving machine small."""

    __tablename__ = "prediction_chunks"
    __table_args__ = (
        Index("ix_prediction_chunks_model_version_last_at", "model", "version", "last_at"),
        Index("ix_prediction_chunks_last_at", "last_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    first_at: Mapped[dt.datetime] = mapped_column(_tz())
    last_at: Mapped[dt.datetime] = mapped_column(_tz())
    requests: Mapped[int] = mapped_column(Integer)
    entries: Mapped[str] = mapped_column(Text)
    columns: Mapped[str | None] = mapped_column(Text, nullable=True)
    inputs: Mapped[str] = mapped_column(Text)
    outputs: Mapped[str] = mapped_column(Text)
    table: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class PredictionIdRow(Base):
    """Where a logged request id is (its chunk and position): what the feedback join
    and lookups by id read. The first entry of a request id wins."""

    __tablename__ = "prediction_ids"
    # The id is the key: one B-tree per row, not a rowid table and an index.
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012  # SQLAlchemy's own hook

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)


class FeedbackRow(Base):
    """The ground truth of one logged request (one label per row it predicted); a label
    sent again replaces the first."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_model_version", "model", "version"),
                      Index("ix_feedback_received_at", "received_at"))

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text)  # JSON: one label, or a list of one per row
    received_at: Mapped[dt.datetime] = mapped_column(_tz())
    updated_at: Mapped[dt.datetime] = mapped_column(_tz())


class ReferenceProfileRow(Base):
    """A version's reference profile (``stats.profile.Reference`` as JSON): what its
    training data looked like, the baseline of drift. Saved at registration when the
    data is known, or attached later; at most one per version."""

    __tablename__ = "reference_profiles"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(_tz())


class ProfileWindowRow(Base):
    """The live profile one worker accumulated for one version in one window (a minute or
    an hour): a float64 vector laid out by the reference whose ``digest`` it names. A
    worker rewrites its row as the window fills; rows of all workers add up."""

    __tablename__ = "profile_windows"
    __table_args__ = (Index("ix_profile_windows_lookup", "model", "version", "width_s",
                            "start"),
                      Index("ix_profile_windows_start", "start"))

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    width_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[dt.datetime] = mapped_column(_tz(), primary_key=True)
    worker: Mapped[str] = mapped_column(String(32), primary_key=True)
    digest: Mapped[str] = mapped_column(String(16), primary_key=True)
    counts: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(_tz())


# --- alerts -----------------------------------------------------------------------------


class AlertRuleRow(Base):
    """An alert rule: when ``metric`` of a model's version over ``window_s`` compares to
    ``threshold`` by ``op`` (with at least ``min_samples``), ``action`` runs, at most
    once per ``cooldown_s``."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: production
    metric: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    window_s: Mapped[int] = mapped_column(Integer)
    min_samples: Mapped[int] = mapped_column(Integer)
    cooldown_s: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(_tz())
    created_by: Mapped[str] = mapped_column(String(128))
    last_fired_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)


class AlertEventRow(Base):
    """One firing of a rule: the numbers that fired it and what its action did."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_model_at", "model", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    op: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # pending | done | failed
    outcome: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(_tz())
    updated_at: Mapped[dt.datetime] = mapped_column(_tz())


class LeaseRow(Base):
    """A named lease: the one process (of all workers and replicas) that holds it until
    ``expires_at`` runs the singleton job it names (the alert evaluator)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(_tz())


# --- deployments ----------------------------------------------------------------------


class DeploymentRow(Base):
    """A model's deployment: the rollout under way (or the last one) and the previous
    production version kept loaded. The stable version is not stored here: it is the
    model's production version, whose stage is the one source of truth."""

    __tablename__ = "deployments"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str | None] = mapped_column(String(16), nullable=True)
    rollout_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    candidate: Mapped[str | None] = mapped_column(String(64), nullable=True)
    candidate_weight: Mapped[float] = mapped_column(Float)
    shadow_fraction: Mapped[float | None] = mapped_column(Float, nullable=True)
    steps: Mapped[list[Any]] = mapped_column(JSON)
    step: Mapped[int] = mapped_column(Integer)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    analysis: Mapped[dict[str, Any]] = mapped_column(JSON)  # the controller's memory
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)
    keep_until: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(_tz())
    step_started_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)


class DeploymentEventRow(Base):
    """What happened to a deployment and why, newest last."""

    __tablename__ = "deployment_events"
    __table_args__ = (Index("ix_deployment_events_model_id", "model", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    rollout_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    at: Mapped[dt.datetime] = mapped_column(_tz())
    kind: Mapped[str] = mapped_column(String(32))
    from_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    to_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    numbers: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ShadowWindowRow(Base):
    """What one worker saw of a shadow version in one minute: requests copied to it,
    answers compared with the stable version's (rows that agreed, the sum of absolute
    differences of numeric predictions), its errors and its latency. Rows of all
    workers add up."""

    __tablename__ = "shadow_windows"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    stable: Mapped[str] = mapped_column(String(64), primary_key=True)
    shadow: Mapped[str] = mapped_column(String(64), primary_key=True)
    start: Mapped[dt.datetime] = mapped_column(_tz(), primary_key=True)
    worker: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    agreed: Mapped[int] = mapped_column(Integer)
    numeric_rows: Mapped[int] = mapped_column(Integer)
    abs_diff_sum: Mapped[float] = mapped_column(Float)
    latency_sum: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(_tz())


# --- jobs -----------------------------------------------------------------------------


class JobRow(Base):
    """An asynchronous prediction job. Workers claim queued jobs (and running ones whose
    lease expired: their worker died) and hold them with a lease they renew."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created_at", "status", "created_at"),
                      Index("ix_jobs_submitted_by", "submitted_by"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    input_kind: Mapped[str] = mapped_column(String(16))
    input_ref: Mapped[str] = mapped_column(String(200))
    input_format: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    submitted_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(_tz())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rejected: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rejects_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(_tz(), nullable=True)


# --- feature definitions --------------------------------------------------------------


class FeatureRepoRow(Base):
    """One version of the feature definitions (entities, views, services), as applied:
    a new version only when they changed; never edited."""

    __tablename__ = "feature_repos"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    definitions: Mapped[str] = mapped_column(Text)  # canonical JSON
    applied_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(_tz())

"""Asynchronous prediction jobs: their states and what a job records."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any


class JobStatus(str, enum.Enum):
    """Where a job is; a closed set with an explicit transition table."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def done(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    def can_move_to(self, target: JobStatus) -> bool:
        return target in JOB_TRANSITIONS[self]


# A running job whose worker died (its lease expired) is taken again: RUNNING -> RUNNING
# under another holder, or FAILED once it has used its attempts.
JOB_TRANSITIONS: dict[JobStatus, tuple[JobStatus, ...]] = {
    JobStatus.QUEUED: (JobStatus.RUNNING, JobStatus.FAILED),
    JobStatus.RUNNING: (JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED),
    JobStatus.SUCCEEDED: (),
    JobStatus.FAILED: (),
}


class JobInput(str, enum.Enum):
    """What a job's input is: rows sent with it (stored as a blob), an uploaded file (a
    blob), or a dataset version."""

    ROWS = "rows"
    FILE = "file"
    DATASET = "dataset"


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    version: str  # resolved at submission: the job scores with this version, whatever
    # production becomes meanwhile
    input_kind: JobInput
    input_ref: str  # a blob digest (rows, file) or "NAME@VERSION" (dataset)
    input_format: str  # json, csv or parquet
    status: JobStatus
    submitted_by: str
    created_at: dt.datetime
    attempts: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    rows: int | None = None  # rows scored
    rejected: int | None = None  # rows refused by the signature (in the rejects file)
    result_digest: str | None = None  # the predictions, JSON lines, in the artifact store
    rejects_digest: str | None = None
    error: str | None = None
    holder: str | None = None  # the worker running it
    lease_expires_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """PRODUCT.md §3.9's shape, with the times and the rejected rows."""
        def time(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {"job_id": self.id, "model": self.model, "version": self.version,
                "status": self.status.value, "rows": self.rows, "rejected": self.rejected,
                "result_uri": f"/v1/jobs/{self.id}/result" if self.result_digest else None,
                "rejects_uri": f"/v1/jobs/{self.id}/rejects" if self.rejects_digest
                else None,
                "error": self.error, "attempts": self.attempts,
                "input": {"kind": self.input_kind.value, "format": self.input_format,
                          **({"dataset": self.input_ref}
                             if self.input_kind is JobInput.DATASET else {})},
                "created_at": time(self.created_at), "started_at": time(self.started_at),
                "finished_at": time(self.finished_at)}

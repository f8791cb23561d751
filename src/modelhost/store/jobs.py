"""The job queue: asynchronous prediction jobs, claimed by workers under a lease.

A worker claims the oldest job that is queued, or running under a lease that expired (its
worker died), in one transaction: on PostgreSQL the candidate row is locked with ``FOR
UPDATE SKIP LOCKED``, so workers on many replicas each take a different job without
waiting on one another; on SQLite the write transaction (``BEGIN IMMEDIATE``) serializes
claims. The claim sets the holder, the lease's end and one more attempt; a job that has
used its attempts fails instead of running again. Every later write (renewal, the outcome)
is conditional on the holder still holding the lease, so a worker that lost its job (it
stalled past the lease and another took over) cannot overwrite the other's result.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update

from modelhost._utils import as_utc
from modelhost.entities import Job, JobInput, JobStatus
from modelhost.errors import NotFoundError
from modelhost.store.database import Database
from modelhost.store.schema import JobRow


class JobNotFoundError(NotFoundError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")


_QUEUED, _RUNNING = JobStatus.QUEUED.value, JobStatus.RUNNING.value


class JobStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def serialized(self) -> bool:
        """Writes are serialized database-wide (SQLite): one process should claim."""
        return self._db.dialect == "sqlite"

    def add(self, job: Job) -> Job:
        """Persist a new job (queued)."""
        with self._db.session(write=True) as s:
            s.add(JobRow(id=job.id, model=job.model, version=job.version,
                         input_kind=job.input_kind.value, input_ref=job.input_ref,
                         input_format=job.input_format, status=job.status.value,
                         submitted_by=job.submitted_by, created_at=job.created_at,
                         attempts=job.attempts))
        return job

    def get(self, job_id: str) -> Job:
        with self._db.session() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFoundError(job_id)
            return _job(row)

    def list(self, *, submitted_by: str | None = None, model: str | None = None,
             limit: int = 100) -> list[Job]:
        """The newest jobs first, of one submitter or model when given."""
        query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if submitted_by is not None:
            query = query.where(JobRow.submitted_by == submitted_by)
        if model is not None:
            query = query.where(JobRow.model == model)
        with self._db.session() as s:
            return [_job(r) for r in s.execute(query).scalars()]

    def claim(self, holder: str, *, now: dt.datetime, ttl: dt.timedelta,
              max_attempts: int) -> Job | None:
        """Take the oldest runnable job for ``holder`` until ``now + ttl``; None if there
        is none. A job found with ``max_attempts`` used up is failed (and the next one
        looked at)."""
        while True:
            with self._db.session(write=True) as s:
                query = (select(JobRow)
                         .where(or_(JobRow.status == _QUEUED,
                                    (JobRow.status == _RUNNING)
                                    & (JobRow.lease_expires_at < now)))
                         .order_by(JobRow.created_at).limit(1))
                if self._db.dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                row = s.execute(query).scalars().first()
                if row is None:
                    return None
                if row.attempts >= max_attempts:
                    row.status = JobStatus.FAILED.value
                    row.finished_at = now
                    row.holder = row.lease_expires_at = None
                    row.error = (f"its worker stopped {row.attempts} time(s) before it "
                                 "finished; not retried again")
                    continue
                row.status = _RUNNING
                row.holder = holder
                row.lease_expires_at = now + ttl
                row.attempts += 1
                row.started_at = row.started_at or now
                return _job(row)

    def renew(self, job_id: str, holder: str, *, now: dt.datetime,
              ttl: dt.timedelta) -> bool:
        """Extend ``holder``'s lease on a running job; False if it is no longer its."""
        with self._db.session(write=True) as s:
            done = s.execute(update(JobRow).where(
                JobRow.id == job_id, JobRow.holder == holder,
                JobRow.status == _RUNNING).values(lease_expires_at=now + ttl))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def finish(self, job_id: str, holder: str, *, now: dt.datetime, status: JobStatus,
               rows: int | None = None, rejected: int | None = None,
               result_digest: str | None = None, rejects_digest: str | None = None,
               error: str | None = None) -> bool:
        """Record the outcome of ``holder``'s job; False if the job is no longer its
        (then nothing is written)."""
        assert status.done
        with self._db.session(write=True) as s:
            done = s.execute(update(JobRow).where(
                JobRow.id == job_id, JobRow.holder == holder,
                JobRow.status == _RUNNING).values(
                status=status.value, finished_at=now, rows=rows, rejected=rejected,
                result_digest=result_digest, rejects_digest=rejects_digest,
                error=error, holder=None, lease_expires_at=None))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def release(self, job_id: str, holder: str) -> None:
        """Give a running job back to the queue at once (a worker shutting down)."""
        with self._db.session(write=True) as s:
            s.execute(update(JobRow).where(
                JobRow.id == job_id, JobRow.holder == holder,
                JobRow.status == _RUNNING).values(
                status=_QUEUED, holder=None, lease_expires_at=None,
                attempts=JobRow.attempts - 1))

    def digests(self) -> set[str]:
        """Every blob a job refers to (inputs, results, rejects): kept by ``gc``."""
        with self._db.session() as s:
            rows = s.execute(select(JobRow.input_kind, JobRow.input_ref,
                                    JobRow.result_digest, JobRow.rejects_digest)).all()
        found: set[str] = set()
        for kind, ref, result, rejects in rows:
            if kind != JobInput.DATASET.value:
                found.add(ref)
            found.update(d for d in (result, rejects) if d)
        return found


def _job(r: JobRow) -> Job:
    return Job(id=r.id, model=r.model, version=r.version, input_kind=JobInput(r.input_kind),
               input_ref=r.input_ref, input_format=r.input_format,
               status=JobStatus(r.status), submitted_by=r.submitted_by,
               created_at=as_utc(r.created_at), attempts=r.attempts,
               started_at=as_utc(r.started_at) if r.started_at else None,
               finished_at=as_utc(r.finished_at) if r.finished_at else None,
               rows=r.rows, rejected=r.rejected, result_digest=r.result_digest,
               rejects_digest=r.rejects_digest, error=r.error, holder=r.holder,
               lease_expires_at=as_utc(r.lease_expires_at) if r.lease_expires_at else None)

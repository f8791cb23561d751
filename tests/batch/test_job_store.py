"""The job queue on SQLite and PostgreSQL: claims in submission order, one holder per
job, leases renewed and lost, expired leases taken over, attempts bounded; and on
PostgreSQL, workers claiming at the same time never take the same job (SKIP LOCKED)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest

from modelhost import Client
from modelhost.entities import Job, JobInput, JobStatus
from modelhost.store.jobs import JobNotFoundError, JobStore

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
SECOND = dt.timedelta(seconds=1)
TTL = 30 * SECOND


def job(n: int, *, model: str = "iris", by: str = "key:a") -> Job:
    return Job(id=f"job{n:04d}{uuid.uuid4().hex[:8]}", model=model, version="1.0.0",
               input_kind=JobInput.ROWS, input_ref="0" * 64, input_format="json",
               status=JobStatus.QUEUED, submitted_by=by, created_at=T0 + n * SECOND)


def test_claims_renewals_outcomes_and_expired_leases(client: Client) -> None:
    store = JobStore(client.db)
    first, second, third = (store.add(job(n)) for n in (1, 2, 3))
    a = store.claim("a", now=T0, ttl=TTL, max_attempts=2)
    b = store.claim("b", now=T0, ttl=TTL, max_attempts=2)
    assert a is not None and b is not None
    assert (a.id, b.id) == (first.id, second.id)  # oldest first, one holder each
    assert (a.status, a.holder, a.attempts, a.started_at) == (JobStatus.RUNNING, "a", 1, T0)
    assert a.lease_expires_at == T0 + TTL

    assert store.renew(a.id, "a", now=T0 + 20 * SECOND, ttl=TTL)
    assert not store.renew(a.id, "b", now=T0 + 20 * SECOND, ttl=TTL)  # not b's
    assert not store.finish(a.id, "b", now=T0, status=JobStatus.SUCCEEDED)  # nothing written
    assert store.get(a.id).status is JobStatus.RUNNING

    # b's worker dies: at the end of its lease its job is taken again, by c, before the
    # queued one (it is older).
    c = store.claim("c", now=T0 + 31 * SECOND, ttl=TTL, max_attempts=2)
    assert c is not None and (c.id, c.attempts, c.holder) == (second.id, 2, "c")
    c2 = store.claim("c", now=T0 + 31 * SECOND, ttl=TTL, max_attempts=2)
    assert c2 is not None and (c2.id, c2.attempts) == (third.id, 1)
    assert store.claim("d", now=T0 + 31 * SECOND, ttl=TTL, max_attempts=2) is None  # a's
    # b comes back and cannot write over c's run.
    assert not store.finish(second.id, "b", now=T0 + 32 * SECOND, status=JobStatus.FAILED,
                            error="late")
    assert store.finish(second.id, "c", now=T0 + 40 * SECOND, status=JobStatus.SUCCEEDED,
                        rows=5, rejected=0, result_digest="1" * 64)
    done = store.get(second.id)
    assert (done.status, done.rows, done.holder, done.finished_at, done.error) == (
        JobStatus.SUCCEEDED, 5, None, T0 + 40 * SECOND, None)

    # a's lease ran out too (T0 + 50 s): e takes its job, for its second attempt.
    e = store.claim("e", now=T0 + 100 * SECOND, ttl=TTL, max_attempts=2)
    assert e is not None and (e.id, e.attempts) == (first.id, 2)
    # Its workers died twice: it fails instead of running again, and c's job is next.
    late = store.claim("e", now=T0 + 200 * SECOND, ttl=TTL, max_attempts=2)
    assert late is not None and (late.id, late.attempts) == (third.id, 2)
    gone = store.get(first.id)
    assert gone.status is JobStatus.FAILED and "stopped 2 time(s)" in (gone.error or "")

    # Given back (a worker shutting down): queued again, the attempt not counted.
    store.release(late.id, "e")
    back = store.get(late.id)
    assert (back.status, back.holder, back.attempts) == (JobStatus.QUEUED, None, 1)
    assert store.claim("f", now=T0 + 300 * SECOND, ttl=TTL, max_attempts=2) is not None
    assert store.claim("g", now=T0 + 400 * SECOND, ttl=TTL, max_attempts=2) is None
    assert store.get(third.id).status is JobStatus.FAILED


def test_lists_and_lookups(client: Client) -> None:
    store = JobStore(client.db)
    mine = [store.add(job(n, by="key:mine")) for n in range(3)]
    store.add(job(9, by="key:other", model="wine"))
    assert [j.id for j in store.list(submitted_by="key:mine")] == [j.id for j in mine[::-1]]
    assert [j.model for j in store.list(model="wine")] == ["wine"]
    assert len(store.list(limit=2)) == 2
    with pytest.raises(JobNotFoundError, match="not found"):
        store.get("nope")


@pytest.mark.postgres
def test_concurrent_claims_never_share_a_job(postgres_url: str, tmp_path: object) -> None:
    from modelhost.store import Database
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    db = Database(postgres_url)
    store = JobStore(db)
    jobs = [store.add(job(n)) for n in range(60)]
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(6)

    def worker(name: str) -> None:
        start.wait()
        mine = claimed.setdefault(name, [])
        while (got := store.claim(name, now=T0, ttl=TTL, max_attempts=3)) is not None:
            mine.append(got.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    every = [j for ids in claimed.values() for j in ids]
    assert sorted(every) == sorted(j.id for j in jobs)  # each job once, none lost
    assert sum(1 for ids in claimed.values() if ids) >= 2  # they did work side by side
    db.dispose()

"""Jobs from submission to result with a real registry: rows, an uploaded CSV or Parquet
file and a dataset version, pinned to the version resolved at submission; predictions
equal to in-process ones row by row; rows the signature refuses in the rejects file with
the reason; what fails a job and what is refused before anything is queued; and the
worker that claims, runs and finishes jobs, and gives back the ones it cannot finish."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from modelhost import Client
from modelhost.artifacts.gc import collect_garbage
from modelhost.batch import JobService
from modelhost.batch.worker import JobWorker, WorkerOptions
from modelhost.entities import Job, JobInput, JobStatus
from modelhost.errors import InvalidInputError, NotFoundError
from modelhost.store.alerts import LeaseStore
from tests.fixtures_models import iris, iris_example


def run(service: JobService, job: Job) -> Job:
    """Claim the job (the only one queued), run it, finish it."""
    claimed = service.claim("test", ttl=dt.timedelta(seconds=30), max_attempts=3)
    assert claimed is not None and claimed.id == job.id
    assert service.finish(claimed, "test", service.run(claimed))
    return service.get(job.id)


def lines(service: JobService, job_id: str, *, rejects: bool = False) -> list[dict]:
    data = b"".join(service.result(job_id, rejects=rejects))
    return [orjson.loads(line) for line in data.splitlines()]


def test_rows_are_scored_as_in_process(iris_client: Client) -> None:
    service = iris_client.jobs
    X, _ = iris()
    job = service.submit_rows("iris", None, X.to_dict(orient="records"))
    assert (job.status, job.version, job.input_kind) == (JobStatus.QUEUED, "1.0.0",
                                                         JobInput.ROWS)
    done = run(service, job)
    assert (done.status, done.rows, done.rejected, done.error) == (JobStatus.SUCCEEDED,
                                                                  150, 0, None)
    assert done.rejects_digest is None
    result = lines(service, job.id)
    expected = iris_client.predict("iris", X, version="1.0.0")
    # Its input and result are in use: garbage collection keeps them.
    swept = collect_garbage(iris_client.artifacts, iris_client.artifacts_in_use,
                            grace=dt.timedelta(0), clock=lambda: 4e9)
    assert not {job.input_ref, done.result_digest} & set(swept.removed)
    assert [r["row"] for r in result] == list(range(150))
    assert [r["prediction"] for r in result] == expected.predictions
    assert np.allclose([r["probabilities"] for r in result], expected.probabilities)


def test_a_job_is_pinned_to_the_version_of_its_submission(iris_client: Client) -> None:
    service = iris_client.jobs
    job = service.submit_rows("iris", None, iris_example().to_dict(orient="records"))
    pinned = service.submit_rows("iris", "1.0.1", iris_example().to_dict(orient="records"))
    iris_client.transition_stage("iris", "1.0.1", "staging")
    iris_client.transition_stage("iris", "1.0.1", "production")  # production moves on
    assert run(service, job).version == "1.0.0"
    assert pinned.version == "1.0.1"
    expected = iris_client.predict("iris", iris_example(), version="1.0.0").predictions
    assert [r["prediction"] for r in lines(service, job.id)] == expected


def test_refused_rows_go_to_the_rejects_file_with_the_reason(iris_client: Client) -> None:
    service = iris_client.jobs
    frame = iris_example(rows=8).astype(object)
    frame.iloc[2, 1] = "abc"
    frame.iloc[5, 0] = None
    csv = frame.to_csv(index=False).encode()
    job = service.submit_file("iris", None, csv, "csv")
    done = run(service, job)
    assert (done.status, done.rows, done.rejected) == (JobStatus.SUCCEEDED, 6, 2)
    refused = lines(service, job.id, rejects=True)
    assert [r["row"] for r in refused] == [2, 5]
    assert "sepal_width" in refused[0]["reason"] and refused[0]["input"]["sepal_width"] \
        == "abc"
    assert "null" in refused[1]["reason"] and refused[1]["input"]["sepal_length"] is None
    good = frame.drop(index=[2, 5]).astype(float)
    expected = iris_client.predict("iris", good, version="1.0.0").predictions
    result = lines(service, job.id)
    assert [r["row"] for r in result] == [0, 1, 3, 4, 6, 7]
    assert [r["prediction"] for r in result] == expected


def test_parquet_and_dataset_inputs(iris_client: Client, tmp_path: Path) -> None:
    service = iris_client.jobs
    X, _ = iris()
    buffer = io.BytesIO()
    X.to_parquet(buffer)
    from_file = run(service, service.submit_file("iris", None, buffer.getvalue(), "parquet"))
    assert (from_file.status, from_file.rows) == (JobStatus.SUCCEEDED, 150)
    path = tmp_path / "iris.csv"
    X.head(40).to_csv(path, index=False)
    iris_client.datasets.add(path, name="iris-data")
    job = service.submit_uri("iris", None, "dataset://iris-data")
    assert job.input_ref == "iris-data@1" and job.to_dict()["input"]["dataset"] == \
        "iris-data@1"
    done = run(service, job)
    assert (done.status, done.rows) == (JobStatus.SUCCEEDED, 40)
    assert [r["prediction"] for r in lines(service, job.id)] == \
        iris_client.predict("iris", X.head(40)).predictions


def test_what_is_refused_before_anything_is_queued(iris_client: Client) -> None:
    service = iris_client.jobs
    rows = iris_example().to_dict(orient="records")
    with pytest.raises(NotFoundError):
        service.submit_rows("nope", None, rows)
    with pytest.raises(NotFoundError):
        service.submit_rows("iris", "9.9.9", rows)
    with pytest.raises(NotFoundError):
        service.submit_uri("iris", None, "dataset://missing")
    for bad in ("s3://bucket/data.csv", "dataset://", "dataset://x/one", 7):
        with pytest.raises(InvalidInputError, match="dataset"):
            service.submit_uri("iris", None, bad)
    for bad in (None, [], {}, "rows"):
        with pytest.raises(InvalidInputError, match="inputs"):
            service.submit_rows("iris", None, bad)
    with pytest.raises(InvalidInputError, match="CSV or Parquet"):
        service.submit_file("iris", None, b"a,b\n1,2\n", "xlsx")
    with pytest.raises(InvalidInputError, match="empty"):
        service.submit_file("iris", None, b"", "csv")
    assert service.list() == []


def test_what_fails_a_job(iris_client: Client) -> None:
    service = iris_client.jobs
    missing = iris_example().drop(columns=["sepal_length"]).to_dict(orient="records")
    failed = run(service, service.submit_rows("iris", None, missing))
    assert failed.status is JobStatus.FAILED
    assert "sepal_length" in (failed.error or "") and "missing" in (failed.error or "")
    with pytest.raises(NotFoundError, match="no result: it is failed"):
        list(service.result(failed.id))
    garbage = run(service, service.submit_file("iris", None, b"\x00\x01 not parquet",
                                               "parquet"))
    assert garbage.status is JobStatus.FAILED and "parquet" in (garbage.error or "")


@pytest.mark.anyio
async def test_the_worker_claims_runs_and_finishes(iris_client: Client) -> None:
    service = iris_client.jobs
    jobs = [service.submit_rows("iris", None, iris_example().to_dict(orient="records"))
            for _ in range(3)]
    worker = JobWorker(service, options=WorkerOptions(concurrency=2, poll_s=0.05),
                       leases=LeaseStore(iris_client.db))
    started = await worker.run_once()
    assert [j.id for j in started] == [j.id for j in jobs[:2]]  # two at once
    worker.start()
    for _ in range(400):
        if all(service.get(j.id).status is JobStatus.SUCCEEDED for j in jobs):
            break
        await asyncio.sleep(0.02)
    await worker.stop()
    assert [service.get(j.id).status for j in jobs] == [JobStatus.SUCCEEDED] * 3
    assert {service.get(j.id).attempts for j in jobs} == {1}


@pytest.mark.anyio
async def test_a_stopping_worker_gives_its_job_back(iris_client: Client) -> None:
    service = iris_client.jobs
    big = pd.concat([iris()[0]] * 2000, ignore_index=True)  # 300,000 rows: a while
    job = service.submit_rows("iris", None, big.to_dict(orient="list"))
    worker = JobWorker(service, options=WorkerOptions(poll_s=0.05))
    assert [j.id for j in await worker.run_once()] == [job.id]
    assert worker.running == [job.id]
    await worker.stop()
    back = service.get(job.id)
    assert (back.status, back.holder, back.attempts) == (JobStatus.QUEUED, None, 0)
    # Another worker runs it from the start.
    other = JobWorker(service, options=WorkerOptions(poll_s=0.05))
    other.start()
    for _ in range(1000):
        if service.get(job.id).status.done:
            break
        await asyncio.sleep(0.02)
    await other.stop()
    done = service.get(job.id)
    assert (done.status, done.rows, done.attempts) == (JobStatus.SUCCEEDED, 300_000, 1)

"""Asynchronous prediction jobs: submitted, persisted, then scored by a worker.

Submitting resolves the version (the job is pinned to it, whatever production becomes
meanwhile), checks the input exists, stores rows or an uploaded file in the artifact
store, and only then records the job as queued: a job acknowledged is a job kept. Running
one reads its input, scores it in chunks with the version's own scoring kernel (the same
checks as a request), puts the rows the signature refuses in a rejects file with the
reason instead of failing the whole job, and stores the predictions in the artifact store
as JSON lines, one object per row: ``{"row", "prediction"[, "probabilities"]}``.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from modelhost._actor import current_actor
from modelhost._utils import utcnow
from modelhost.artifacts import ArtifactStore
from modelhost.batch.rows import dataset_uri, numbers_from_text, prepare_rows
from modelhost.entities import DatasetVersion, Job, JobInput, JobStatus
from modelhost.errors import (
    InvalidInputError,
    ModelhostError,
    NotFoundError,
    StoreUnavailableError,
)
from modelhost.registry import Registry
from modelhost.registry.scoring import Scorer, check_finite, check_sunset, first_line
from modelhost.store.jobs import JobStore

CHUNK_ROWS = 10_000  # rows scored per model call
FORMATS = ("json", "csv", "parquet")
FindDataset = Callable[[str, int | None], DatasetVersion]
"""``(name, version or None: the newest)`` -> that dataset version, or NotFoundError."""
ReadDataset = Callable[[DatasetVersion], Any]
"""A dataset version -> its data as a DataFrame (verified)."""


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    rows: int | None = None
    rejected: int | None = None
    result_digest: str | None = None
    rejects_digest: str | None = None
    error: str | None = None


class JobService:
    """Submit, read and run prediction jobs."""

    def __init__(self, store: JobStore, registry: Registry, artifacts: ArtifactStore, *,
                 find_dataset: FindDataset | None = None,
                 read_dataset: ReadDataset | None = None,
                 now: Callable[[], dt.datetime] = utcnow) -> None:
        self._store = store
        self._registry = registry
        self._artifacts = artifacts
        self._find_dataset = find_dataset
        self._read_dataset = read_dataset
        self._now = now
        # Versions never change: the last ones used stay loaded for the next jobs.
        self._scorer = functools.lru_cache(maxsize=2)(self._load)

    @property
    def one_process(self) -> bool:
        """Whether one process should run the jobs (SQLite serializes every write)."""
        return self._store.serialized

    # --- submitting and reading --------------------------------------------------------

    def submit_rows(self, model: str, ref: str | None, inputs: Any) -> Job:
        """A job over ``inputs`` (records, or a dict of columns, as a request's)."""
        if not isinstance(inputs, (list, dict)) or not inputs:
            raise InvalidInputError("'inputs' must be a non-empty list of records or a "
                                    "dict of columns")
        version = self._resolve(model, ref)
        digest = self._artifacts.put_bytes(orjson.dumps(inputs)).digest
        return self._add(model, version, JobInput.ROWS, digest, "json")

    def submit_file(self, model: str, ref: str | None, data: bytes, fmt: str) -> Job:
        """A job over an uploaded CSV or Parquet file."""
        if fmt not in ("csv", "parquet"):
            raise InvalidInputError(f"a job's file is CSV or Parquet, not {fmt!r}")
        if not data:
            raise InvalidInputError("the uploaded file is empty")
        version = self._resolve(model, ref)
        digest = self._artifacts.put_bytes(data).digest
        return self._add(model, version, JobInput.FILE, digest, fmt)

    def submit_uri(self, model: str, ref: str | None, uri: Any) -> Job:
        """A job over a dataset version: ``dataset://NAME`` (its newest version) or
        ``dataset://NAME/VERSION``."""
        name, number = dataset_uri(uri)
        if self._find_dataset is None or self._read_dataset is None:
            raise NotFoundError("datasets are not available on this server")
        version = self._resolve(model, ref)
        dataset = self._find_dataset(name, number)  # it exists, now: read when it runs
        return self._add(model, version, JobInput.DATASET, dataset.ref, "dataset")

    def get(self, job_id: str) -> Job:
        return self._store.get(job_id)

    def list(self, *, submitted_by: str | None = None, model: str | None = None,
             limit: int = 100) -> list[Job]:
        return self._store.list(submitted_by=submitted_by, model=model, limit=limit)

    def result(self, job_id: str, *, rejects: bool = False) -> Iterator[bytes]:
        """The job's predictions (or rejected rows) as JSON lines, verified."""
        job = self._store.get(job_id)
        digest = job.rejects_digest if rejects else job.result_digest
        if digest is None:
            what = "rejected rows" if rejects else "result"
            state = ("it had none" if job.status is JobStatus.SUCCEEDED
                     else f"it is {job.status.value}")
            raise NotFoundError(f"job {job_id!r} has no {what}: {state}")
        data = self._artifacts.get_bytes(digest)
        for start in range(0, len(data), 1 << 20):
            yield data[start:start + (1 << 20)]

    def _resolve(self, model: str, ref: str | None) -> str:
        return str(self._registry.get_version(model, ref or "@production").version)

    def _add(self, model: str, version: str, kind: JobInput, ref: str, fmt: str) -> Job:
        return self._store.add(Job(
            id=uuid.uuid4().hex, model=model, version=version, input_kind=kind,
            input_ref=ref, input_format=fmt, status=JobStatus.QUEUED,
            submitted_by=current_actor().name, created_at=self._now()))

    # --- running -----------------------------------------------------------------------

    def claim(self, holder: str, *, ttl: dt.timedelta, max_attempts: int) -> Job | None:
        return self._store.claim(holder, now=self._now(), ttl=ttl, max_attempts=max_attempts)

    def renew(self, job: Job, holder: str, *, ttl: dt.timedelta) -> bool:
        return self._store.renew(job.id, holder, now=self._now(), ttl=ttl)

    def release(self, job: Job, holder: str) -> None:
        self._store.release(job.id, holder)

    def run(self, job: Job) -> Outcome:
        """Score the job's input; never raises for what is wrong with the job itself
        (its input, its model: a failed outcome), only for a store that fails."""
        try:
            frame = self._input(job)
            scorer = self._scorer(job.model, job.version)
            if job.input_format == "csv" and scorer.version.signature is not None:
                frame = numbers_from_text(frame, scorer.version.signature)
            check_sunset(scorer.version, self._now().date())
            results = io.BytesIO()
            rejects = io.BytesIO()
            scored = rejected = 0
            for start in range(0, len(frame), CHUNK_ROWS):
                chunk = frame.iloc[start:start + CHUNK_ROWS]
                inputs, kept, refused = prepare_rows(scorer, chunk, start)
                for row, reason in refused:
                    rejects.write(orjson.dumps({"row": row, "reason": reason,
                                                "input": _record(frame, row)},
                                               option=orjson.OPT_SERIALIZE_NUMPY
                                               | orjson.OPT_NAIVE_UTC) + b"\n")
                rejected += len(refused)
                if not kept:
                    continue
                predictions, probabilities, nonfinite = scorer.run(inputs)
                check_finite(nonfinite)
                _write_results(results, kept, predictions, probabilities)
                scored += len(kept)
        except ModelhostError as exc:
            if isinstance(exc, StoreUnavailableError):
                raise  # not the job's fault: the worker gives it back, it runs again
            return Outcome(JobStatus.FAILED, error=exc.message)
        except Exception as exc:  # noqa: BLE001  # a user model may raise anything
            return Outcome(JobStatus.FAILED, error=f"the model raised {first_line(exc)}")
        result = self._artifacts.put_bytes(results.getvalue()).digest
        refused_digest = (self._artifacts.put_bytes(rejects.getvalue()).digest
                          if rejected else None)
        return Outcome(JobStatus.SUCCEEDED, rows=scored, rejected=rejected,
                       result_digest=result, rejects_digest=refused_digest)

    def _load(self, model: str, version: str) -> Scorer:
        loaded = self._registry.load(model, version)
        validator = None
        if loaded.version.signature is not None and loaded.version.signature.inputs:
            from modelhost.signature import InputValidator

            validator = InputValidator(loaded.version.signature, max_problems=CHUNK_ROWS)
        scorer = Scorer(loaded.version, loaded.model, validator=validator)
        scorer.warm_up()  # the flavor's fast paths, as a server's
        return scorer

    def finish(self, job: Job, holder: str, outcome: Outcome) -> bool:
        return self._store.finish(job.id, holder, now=self._now(), status=outcome.status,
                                  rows=outcome.rows, rejected=outcome.rejected,
                                  result_digest=outcome.result_digest,
                                  rejects_digest=outcome.rejects_digest,
                                  error=outcome.error)

    def _input(self, job: Job) -> Any:
        import pandas as pd

        if job.input_kind is JobInput.DATASET:
            assert self._find_dataset is not None and self._read_dataset is not None, \
                "a dataset job on a server without datasets"
            name, _, number = job.input_ref.rpartition("@")
            dataset = self._find_dataset(name, int(number))
            return self._read_dataset(dataset).reset_index(drop=True)
        data = self._artifacts.get_bytes(job.input_ref)
        try:
            if job.input_format == "json":
                return pd.DataFrame(orjson.loads(data))
            if job.input_format == "csv":
                return pd.read_csv(io.BytesIO(data))
            return pd.read_parquet(io.BytesIO(data))
        except ImportError as exc:
            raise InvalidInputError("reading Parquet needs pyarrow on the server "
                                    "(pip install 'modelhost[parquet]')") from exc
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"the input could not be read as "
                                    f"{job.input_format}: {type(exc).__name__}") from exc


_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def file_format(filename: str) -> str:
    """``csv`` or ``parquet``: a job's input file format, from its name."""
    suffix = filename[filename.rfind("."):].lower() if "." in filename else ""
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        raise InvalidInputError(f"the file must be .csv or .parquet, got {filename[:80]!r}")
    return fmt


def _write_results(out: io.BytesIO, rows: list[int], predictions: Any,
                   probabilities: Any) -> None:
    predicted = predictions.tolist()
    probs = probabilities.tolist() if probabilities is not None else None
    for i, row in enumerate(rows):
        record: dict[str, Any] = {"row": row, "prediction": predicted[i]}
        if probs is not None:
            record["probabilities"] = probs[i]
        out.write(orjson.dumps(record) + b"\n")


def _record(frame: Any, row: int) -> dict[str, Any]:
    """One input row as JSON-friendly values (what the rejects file shows)."""
    values = frame.iloc[row].to_dict()
    return {str(k): (None if _missing(v) else v.item() if hasattr(v, "item") else v)
            for k, v in values.items()}


def _missing(value: Any) -> bool:
    try:
        return bool(value != value)  # NaN (and pandas' NA-like floats)
    except (TypeError, ValueError):
        return value is None

"""Persistence of experiments, runs and everything logged to them."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelhost._utils import as_utc, utcnow
from modelhost.entities import Experiment, MetricPoint, Run, RunStatus
from modelhost.errors import (
    AmbiguousRunIdError,
    ConflictError,
    DatasetNotFoundError,
    ExperimentNotFoundError,
    RunIdTooShortError,
    RunNotFoundError,
)
from modelhost.store.database import Database, WriteConflictError
from modelhost.store.schema import (
    DatasetRow,
    DatasetVersionRow,
    ExperimentRow,
    RunArtifactRow,
    RunDatasetRow,
    RunMetricRow,
    RunParamRow,
    RunRow,
    RunTagRow,
)

MIN_RUN_ID_PREFIX = 4
"""The shortest run id prefix ``get_run`` accepts (as git's shortest commit hash)."""
_MAX_CANDIDATES = 10
_HEX = re.compile(r"[0-9a-f]+")


class TrackingStore:
    """Experiments and runs in the metadata database.

    ``new_run_id`` makes the id of each new run (32 hex characters; random by default).
    """

    def __init__(self, db: Database, *,
                 new_run_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._db = db
        self._new_run_id = new_run_id

    # --- experiments ----------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> Experiment:
        for _ in range(3):
            try:
                with self._db.session(write=True) as s:
                    row = self._experiment_or_none(s, name)
                    if row is None:
                        row = ExperimentRow(name=name, created_at=utcnow())
                        s.add(row)
                        s.flush()
                    return Experiment(name=row.name, created_at=as_utc(row.created_at))
            except WriteConflictError:
                continue  # created concurrently; read it on the next pass
        raise ConflictError(f"experiment {name!r} is being created concurrently; try again")

    # --- runs -----------------------------------------------------------------------

    def create_run(self, experiment: str, *, name: str | None = None,
                   git_commit: str | None = None,
                   tags: Mapping[str, str] | None = None,
                   params: Mapping[str, str] | None = None) -> Run:
        self.get_or_create_experiment(experiment)
        with self._db.session(write=True) as s:
            exp = self._experiment_or_none(s, experiment)
            if exp is None:
                raise ExperimentNotFoundError(experiment)
            run_id = self._new_run_id()
            s.add(RunRow(id=run_id, experiment_id=exp.id, name=name or f"run-{run_id[:8]}",
                         status=RunStatus.RUNNING.value, start_time=utcnow(),
                         git_commit=git_commit))
            s.flush()
            s.add_all(RunTagRow(run_id=run_id, key=k, value=str(v))
                      for k, v in (tags or {}).items())
            s.add_all(RunParamRow(run_id=run_id, key=k, value=str(v))
                      for k, v in (params or {}).items())
        return self.get_run(run_id)

    def end_run(self, run_id: str, status: RunStatus) -> Run:
        with self._db.session(write=True) as s:
            row = self._run_row(s, run_id)
            row.status = status.value
            row.end_time = utcnow()
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
        """A run by its id, or by a prefix of it that no other run id shares (as git
        takes a short commit hash).

        Raises:
            RunNotFoundError: no run id is or starts with ``run_id``.
            RunIdTooShortError: a prefix shorter than MIN_RUN_ID_PREFIX characters.
            AmbiguousRunIdError: several run ids start with it (it lists them).
        """
        with self._db.session() as s:
            row = s.get(RunRow, run_id) if isinstance(run_id, str) else None
            return self._run(s, row if row is not None else self._run_by_prefix(s, run_id))

    def experiment_names(self) -> list[str]:
        """Every experiment's name, sorted."""
        with self._db.session() as s:
            return list(s.scalars(select(ExperimentRow.name).order_by(ExperimentRow.name)))

    def list_runs(self, experiment: str | None = None, *, limit: int = 100) -> list[Run]:
        with self._db.session() as s:
            q = select(RunRow).order_by(RunRow.start_time.desc()).limit(limit)
            if experiment is not None:
                exp = self._experiment_or_none(s, experiment)
                if exp is None:
                    raise ExperimentNotFoundError(experiment)
                q = q.where(RunRow.experiment_id == exp.id)
            # The parts are read for this query's runs (a subquery, not a list of ids
            # as long as the limit).
            return self._runs(s, s.scalars(q).all(),
                              ids=q.with_only_columns(RunRow.id).subquery())

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        with self._db.session(write=True) as s:
            self._run_row(s, run_id)
            for key, value in params.items():
                s.merge(RunParamRow(run_id=run_id, key=key, value=value))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], *,
                    step: int | None = None) -> None:
        with self._db.session(write=True) as s:
            self._run_row(s, run_id)
            now = utcnow()
            for key, value in metrics.items():
                at = step
                if at is None:  # no step given: one past the metric's last step
                    last = s.scalar(select(func.max(RunMetricRow.step)).where(
                        RunMetricRow.run_id == run_id, RunMetricRow.key == key))
                    at = 0 if last is None else int(last) + 1
                s.add(RunMetricRow(run_id=run_id, key=key, value=float(value), step=at,
                                   timestamp=now))

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        with self._db.session() as s:
            self._run_row(s, run_id)
            rows = s.scalars(select(RunMetricRow).where(
                RunMetricRow.run_id == run_id, RunMetricRow.key == key)
                .order_by(RunMetricRow.step, RunMetricRow.id))
            return [MetricPoint(key=r.key, value=r.value, step=r.step,
                                timestamp=as_utc(r.timestamp)) for r in rows]

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        with self._db.session(write=True) as s:
            self._run_row(s, run_id)
            for key, value in tags.items():
                s.merge(RunTagRow(run_id=run_id, key=key, value=value))

    def log_artifact(self, run_id: str, path: str, digest: str, size: int) -> None:
        with self._db.session(write=True) as s:
            self._run_row(s, run_id)
            s.merge(RunArtifactRow(run_id=run_id, path=path, digest=digest, size=size))

    def artifact_digests(self) -> set[str]:
        """Every artifact (manifest) digest a run artifact points at."""
        with self._db.session() as s:
            return set(s.scalars(select(RunArtifactRow.digest).distinct()))

    def log_datasets(self, run_id: str, refs: Sequence[tuple[str, int]]) -> None:
        with self._db.session(write=True) as s:
            self._run_row(s, run_id)
            for name, version in refs:
                found = s.scalar(select(DatasetVersionRow.id).join(DatasetRow).where(
                    DatasetRow.name == name, DatasetVersionRow.version == version))
                if found is None:
                    raise DatasetNotFoundError(name, version)
                s.merge(RunDatasetRow(run_id=run_id, dataset_version_id=found))

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def _experiment_or_none(s: Session, name: str) -> ExperimentRow | None:
        return s.scalar(select(ExperimentRow).where(ExperimentRow.name == name))

    @staticmethod
    def _run_by_prefix(s: Session, prefix: str) -> RunRow:
        text = str(prefix).strip().lower()
        if not _HEX.fullmatch(text):  # ids are hex: nothing else can match
            raise RunNotFoundError(str(prefix))
        if len(text) < MIN_RUN_ID_PREFIX:
            raise RunIdTooShortError(str(prefix), MIN_RUN_ID_PREFIX)
        rows = list(s.scalars(select(RunRow).where(RunRow.id.startswith(text))
                              .order_by(RunRow.id).limit(_MAX_CANDIDATES + 1)))
        if not rows:
            raise RunNotFoundError(str(prefix))
        if len(rows) > 1:
            raise AmbiguousRunIdError(str(prefix), [r.id for r in rows[:_MAX_CANDIDATES]],
                                      more=len(rows) > _MAX_CANDIDATES)
        return rows[0]

    @staticmethod
    def _run_row(s: Session, run_id: str) -> RunRow:
        row = s.get(RunRow, run_id) if isinstance(run_id, str) else None
        if row is None:
            raise RunNotFoundError(str(run_id))
        return row

    @staticmethod
    def _run(s: Session, row: RunRow) -> Run:
        return TrackingStore._runs(s, [row])[0]

    @staticmethod
    def _runs(s: Session, rows: Sequence[RunRow], *, ids: Any = None) -> list[Run]:
        """The runs of ``rows``, with a fixed number of reads for all of them (each read
        takes every run at once), in the order given. ``ids``: a subquery of the rows'
        ids (by default, their list)."""
        if not rows:
            return []
        ids = [row.id for row in rows] if ids is None else select(ids.c.id)
        experiments = {e.id: e.name for e in s.scalars(select(ExperimentRow).where(
            ExperimentRow.id.in_({row.experiment_id for row in rows})))}

        def by_run(statement: Any) -> dict[str, dict[str, Any]]:
            found: dict[str, dict[str, Any]] = defaultdict(dict)
            for run_id, key, value in s.execute(statement):
                found[run_id][key] = value
            return found

        params = by_run(select(RunParamRow.run_id, RunParamRow.key, RunParamRow.value)
                        .where(RunParamRow.run_id.in_(ids)))
        tags = by_run(select(RunTagRow.run_id, RunTagRow.key, RunTagRow.value)
                      .where(RunTagRow.run_id.in_(ids)))
        artifacts = by_run(select(RunArtifactRow.run_id, RunArtifactRow.path,
                                  RunArtifactRow.digest).where(RunArtifactRow.run_id.in_(ids)))
        # Each metric's latest value: the one of the highest step (the last logged of
        # that step), picked by the database rather than by reading every point.
        m = RunMetricRow
        order = func.row_number().over(partition_by=(m.run_id, m.key),
                                       order_by=(m.step.desc(), m.id.desc())).label("n")
        ranked = select(m.run_id, m.key, m.value, order).where(m.run_id.in_(ids)).subquery()
        metrics = by_run(select(ranked.c.run_id, ranked.c.key, ranked.c.value)
                         .where(ranked.c.n == 1).order_by(ranked.c.key))
        datasets: dict[str, list[str]] = defaultdict(list)
        for run_id, name, version in s.execute(
                select(RunDatasetRow.run_id, DatasetRow.name, DatasetVersionRow.version)
                .join(DatasetVersionRow, DatasetVersionRow.dataset_id == DatasetRow.id)
                .join(RunDatasetRow, RunDatasetRow.dataset_version_id == DatasetVersionRow.id)
                .where(RunDatasetRow.run_id.in_(ids)).order_by(DatasetRow.name)):
            datasets[run_id].append(f"{name}@{version}")
        return [Run(run_id=row.id, experiment=experiments[row.experiment_id], name=row.name,
                    status=RunStatus(row.status), start_time=as_utc(row.start_time),
                    end_time=as_utc(row.end_time) if row.end_time else None,
                    params=params.get(row.id, {}),
                    metrics={k: float(v) for k, v in metrics.get(row.id, {}).items()},
                    tags=tags.get(row.id, {}), git_commit=row.git_commit,
                    artifacts=artifacts.get(row.id, {}),
                    datasets=tuple(datasets.get(row.id, ()))) for row in rows]

"""Persistence of datasets and their content-addressed versions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelhost._utils import as_utc, utcnow
from modelhost.entities import DatasetVersion
from modelhost.errors import ConflictError, DatasetNotFoundError
from modelhost.store.database import Database, WriteConflictError
from modelhost.store.schema import DatasetRow, DatasetVersionRow


class DatasetStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_version(self, name: str, *, digest: str, format: str, n_rows: int, size: int,
                    schema: Mapping[str, str],
                    profile: Mapping[str, Any]) -> tuple[DatasetVersion, bool]:
        """Record a version; identical content is the existing version (created False)."""
        for _ in range(3):
            try:
                with self._db.session(write=True) as s:
                    dataset = s.scalar(select(DatasetRow).where(DatasetRow.name == name)
                                       .with_for_update())
                    if dataset is None:
                        dataset = DatasetRow(name=name, created_at=utcnow())
                        s.add(dataset)
                        s.flush()
                    same = s.scalar(select(DatasetVersionRow).where(
                        DatasetVersionRow.dataset_id == dataset.id,
                        DatasetVersionRow.digest == digest))
                    if same is not None:
                        return self._entity(name, same), False
                    last = s.scalar(select(func.max(DatasetVersionRow.version)).where(
                        DatasetVersionRow.dataset_id == dataset.id))
                    row = DatasetVersionRow(
                        dataset_id=dataset.id, version=(last or 0) + 1, digest=digest,
                        format=format, n_rows=n_rows, size=size, schema=dict(schema),
                        profile=dict(profile), created_at=utcnow())
                    s.add(row)
                    s.flush()
                    return self._entity(name, row), True
            except WriteConflictError:
                continue  # a concurrent add won; the next pass sees its row
        raise ConflictError(f"dataset {name!r} is being changed concurrently; try again")

    def get_version(self, name: str, version: int | None = None) -> DatasetVersion:
        """A version by number, or the newest when ``version`` is None."""
        with self._db.session() as s:
            dataset = self._dataset(s, name)
            q = select(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id)
            if version is None:
                q = q.order_by(DatasetVersionRow.version.desc()).limit(1)
            else:
                q = q.where(DatasetVersionRow.version == version)
            row = s.scalar(q)
            if row is None:
                raise DatasetNotFoundError(name, version)
            return self._entity(name, row)

    def list_versions(self, name: str) -> list[DatasetVersion]:
        with self._db.session() as s:
            dataset = self._dataset(s, name)
            rows = s.scalars(select(DatasetVersionRow).where(
                DatasetVersionRow.dataset_id == dataset.id).order_by(DatasetVersionRow.version))
            return [self._entity(name, r) for r in rows]

    def list_datasets(self) -> list[str]:
        with self._db.session() as s:
            return list(s.scalars(select(DatasetRow.name).order_by(DatasetRow.name)))

    def digests(self) -> set[str]:
        """Every artifact (manifest) digest a dataset version points at."""
        with self._db.session() as s:
            return set(s.scalars(select(DatasetVersionRow.digest).distinct()))

    @staticmethod
    def _dataset(s: Session, name: str) -> DatasetRow:
        row = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
        if row is None:
            raise DatasetNotFoundError(name)
        return row

    @staticmethod
    def _entity(name: str, row: DatasetVersionRow) -> DatasetVersion:
        return DatasetVersion(name=name, version=row.version, digest=row.digest,
                              format=row.format, n_rows=row.n_rows, schema=dict(row.schema),
                              profile=dict(row.profile), size=row.size,
                              created_at=as_utc(row.created_at))

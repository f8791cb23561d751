"""Shadow windows: what each worker saw of a shadow version, per minute; summed over
workers and minutes when read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, fields

from sqlalchemy import delete, func, select

from modelhost._utils import utcnow
from modelhost.store.database import Database, insert_for
from modelhost.store.schema import ShadowWindowRow


@dataclass(slots=True)
class ShadowCounts:
    """Counts of one (model, stable, shadow) in one minute by one worker (or, read
    back, summed)."""

    requests: int = 0  # copies answered or failed
    errors: int = 0  # copies that failed
    skipped: int = 0  # copies not sent: too many in flight, or the shadow not loaded
    rows: int = 0  # rows compared
    agreed: int = 0  # rows whose predictions were equal
    numeric_rows: int = 0  # rows with numeric predictions on both sides
    abs_diff_sum: float = 0.0  # their sum of |shadow - stable|
    latency_sum: float = 0.0  # seconds, over the answered copies

    def to_dict(self) -> dict[str, object]:
        answered = self.requests - self.errors
        return {"requests": self.requests, "errors": self.errors, "skipped": self.skipped,
                "rows_compared": self.rows,
                "agreement_rate": round(self.agreed / self.rows, 6) if self.rows else None,
                "mean_abs_difference": (round(self.abs_diff_sum / self.numeric_rows, 6)
                                        if self.numeric_rows else None),
                "mean_latency_ms": (round(self.latency_sum / answered * 1000, 3)
                                    if answered > 0 else None)}


@dataclass(frozen=True, slots=True)
class ShadowWindow:
    model: str
    stable: str
    shadow: str
    start: dt.datetime
    worker: str
    counts: ShadowCounts


_COUNTS = [f.name for f in fields(ShadowCounts)]
_FLOATS = {"abs_diff_sum", "latency_sum"}


class ShadowStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, windows: Sequence[ShadowWindow]) -> None:
        """Store workers' minute counts (replacing the same worker's earlier counts of the
        same minute) in one transaction."""
        if not windows:
            return
        now = utcnow()
        rows = [{"model": w.model, "stable": w.stable, "shadow": w.shadow,
                 "start": w.start.astimezone(dt.timezone.utc), "worker": w.worker,
                 "updated_at": now, **{name: getattr(w.counts, name) for name in _COUNTS}}
                for w in windows]
        with self._db.session(write=True) as s:
            statement = insert_for(s, ShadowWindowRow)
            s.execute(statement.on_conflict_do_update(
                index_elements=["model", "stable", "shadow", "start", "worker"],
                set_={**{name: getattr(statement.excluded, name) for name in _COUNTS},
                      "updated_at": statement.excluded.updated_at}), rows)

    def totals(self, model: str, stable: str, shadow: str, *, start: dt.datetime,
               end: dt.datetime) -> ShadowCounts:
        """The counts of every worker's minutes starting in [start, end), summed."""
        t = ShadowWindowRow
        with self._db.session() as s:
            row = s.execute(select(*[func.coalesce(func.sum(getattr(t, name)), 0)
                                     for name in _COUNTS]).where(
                t.model == model, t.stable == stable, t.shadow == shadow,
                t.start >= start.astimezone(dt.timezone.utc),
                t.start < end.astimezone(dt.timezone.utc))).one()
        counts = ShadowCounts()
        for name, value in zip(_COUNTS, row, strict=True):
            setattr(counts, name, float(value) if name in _FLOATS else int(value))
        return counts

    def prune(self, *, before: dt.datetime) -> int:
        with self._db.session(write=True) as s:
            result = s.execute(delete(ShadowWindowRow).where(
                ShadowWindowRow.start < before.astimezone(dt.timezone.utc)))
            return int(result.rowcount)  # type: ignore[attr-defined]

"""The comparison of two dataset versions: :func:`diff_datasets` compares the stored schema
and profile of two :class:`~modelhost.entities.DatasetVersion` s without reading their data,
into a :class:`DatasetDiff` of :class:`ColumnDiff` s (mean shift, PSI, new values, ...).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelhost.entities import DatasetVersion
from modelhost.tracking.datasets import PERCENTILE_LEVELS, QUANTILE_LEVELS

# A column counts as shifted past any of these (PSI: 0.1 moderate, 0.25 large shift).
PSI_THRESHOLD = 0.1
MEAN_SHIFT_THRESHOLD = 0.2  # in standard deviations of the first version
NULL_RATE_THRESHOLD = 0.01  # absolute change of the share of missing values
_PSI_FLOOR = 1e-4  # share given to an empty bin, so that PSI stays finite


@dataclass(frozen=True)
class ColumnDiff:
    """How one column present in both versions changed.

    ``mean_shift`` is ``(mean_b - mean_a) / std_a``; ``psi`` the population stability
    index of ``b`` against ``a`` (from the stored percentiles of numbers, or the stored value
    counts of categories); ``frequency_changes`` maps the values whose share moved most to
    ``(share_a, share_b)``. ``reasons`` says why the column counts as shifted (empty when
    it does not).
    """

    name: str
    kind: str  # numeric, categorical, or "a -> b" when the kind itself changed
    null_rate_a: float | None
    null_rate_b: float | None
    mean_a: float | None = None
    mean_b: float | None = None
    std_a: float | None = None
    std_b: float | None = None
    mean_shift: float | None = None
    std_ratio: float | None = None
    psi: float | None = None
    new_values: tuple[str, ...] = ()
    vanished_values: tuple[str, ...] = ()
    frequency_changes: dict[str, tuple[float, float]] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    @property
    def shifted(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.name, "kind": self.kind, "shifted": self.shifted,
                "reasons": list(self.reasons),
                "null_rate": {"a": self.null_rate_a, "b": self.null_rate_b},
                "mean": {"a": self.mean_a, "b": self.mean_b},
                "std": {"a": self.std_a, "b": self.std_b},
                "mean_shift": self.mean_shift, "std_ratio": self.std_ratio, "psi": self.psi,
                "new_values": list(self.new_values),
                "vanished_values": list(self.vanished_values),
                "frequency_changes": {k: {"a": a, "b": b}
                                      for k, (a, b) in self.frequency_changes.items()}}


@dataclass(frozen=True)
class DatasetDiff:
    """What changed from dataset version ``a`` to ``b`` (refs ``name@version``).

    ``changed`` is True when a column was added, removed or retyped, the row count moved,
    or a column shifted (see :class:`ColumnDiff`); ``identical`` when both have the same
    content digest.
    """

    a: str
    b: str
    identical: bool
    rows_a: int
    rows_b: int
    added_columns: dict[str, str] = field(default_factory=dict)
    removed_columns: dict[str, str] = field(default_factory=dict)
    retyped_columns: dict[str, tuple[str, str]] = field(default_factory=dict)
    columns: tuple[ColumnDiff, ...] = ()

    @property
    def shifted_columns(self) -> list[ColumnDiff]:
        return [c for c in self.columns if c.shifted]

    @property
    def changed(self) -> bool:
        return bool(self.added_columns or self.removed_columns or self.retyped_columns
                    or self.rows_a != self.rows_b or self.shifted_columns)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "changed": self.changed, "identical": self.identical,
                "rows": {"a": self.rows_a, "b": self.rows_b},
                "added_columns": dict(self.added_columns),
                "removed_columns": dict(self.removed_columns),
                "retyped_columns": {k: {"a": a, "b": b}
                                    for k, (a, b) in self.retyped_columns.items()},
                "columns": [c.to_dict() for c in self.columns]}

    def summary(self) -> str:
        if not self.changed:
            same = "identical content" if self.identical else "same schema and distributions"
            return f"{self.a} -> {self.b}: no change ({same}, {self.rows_b} rows)."
        lines = [f"{self.a} -> {self.b}: changed.", f"rows: {self.rows_a} -> {self.rows_b}"
                 + (f" ({_signed(self.rows_b - self.rows_a)})"
                    if self.rows_a != self.rows_b else "")]
        if self.added_columns:
            lines.append("added columns: " + ", ".join(
                f"{k} ({t})" for k, t in self.added_columns.items()))
        if self.removed_columns:
            lines.append("removed columns: " + ", ".join(
                f"{k} ({t})" for k, t in self.removed_columns.items()))
        if self.retyped_columns:
            lines.append("retyped columns: " + ", ".join(
                f"{k} ({a} -> {b})" for k, (a, b) in self.retyped_columns.items()))
        shifted = self.shifted_columns
        if shifted:
            lines.append("distribution shifts:")
            lines += [f"- {c.name}: {'; '.join(c.reasons)}" for c in shifted]
        steady = len(self.columns) - len(shifted)
        if steady:
            other = " other" if shifted else ""
            lines.append(f"no shift in {steady}{other} column{'s' if steady != 1 else ''}")
        return "\n".join(lines)


def diff_datasets(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Compare two dataset versions by their stored schema and profile (no data read)."""
    added = {k: t for k, t in b.schema.items() if k not in a.schema}
    removed = {k: t for k, t in a.schema.items() if k not in b.schema}
    retyped = {k: (t, b.schema[k]) for k, t in a.schema.items()
               if k in b.schema and b.schema[k] != t}
    stats_a, stats_b = _profile_columns(a), _profile_columns(b)
    columns = tuple(_diff_column(name, stats_a.get(name, {}), stats_b.get(name, {}))
                    for name in b.schema if name in a.schema)
    return DatasetDiff(a=a.ref, b=b.ref, identical=a.digest == b.digest,
                       rows_a=a.n_rows, rows_b=b.n_rows, added_columns=added,
                       removed_columns=removed, retyped_columns=retyped, columns=columns)


def _profile_columns(dv: DatasetVersion) -> dict[str, Mapping[str, Any]]:
    """Each column's profile, with the number of its non-missing values as ``count``."""
    columns = dv.profile.get("columns", {})
    if not isinstance(columns, Mapping):
        return {}
    return {str(name): {**stats, "count": dv.n_rows - int(_float(stats.get("nulls")) or 0)}
            for name, stats in columns.items() if isinstance(stats, Mapping)}


def _diff_column(name: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> ColumnDiff:
    kind_a, kind_b = a.get("kind"), b.get("kind")
    null_a, null_b = _float(a.get("null_rate")), _float(b.get("null_rate"))
    reasons: list[str] = []
    if null_a is not None and null_b is not None \
            and abs(null_b - null_a) >= NULL_RATE_THRESHOLD:
        reasons.append(f"null rate {null_a:.1%} -> {null_b:.1%}")
    base = ColumnDiff(name=name, kind=str(kind_a) if kind_a == kind_b else f"{kind_a} -> "
                      f"{kind_b}", null_rate_a=null_a, null_rate_b=null_b)
    if kind_a == kind_b == "numeric":
        return _diff_numeric(base, a, b, reasons)
    if kind_a == kind_b == "categorical":
        return _diff_categorical(base, a, b, reasons)
    return replace(base, reasons=tuple(reasons))


def _diff_numeric(base: ColumnDiff, a: Mapping[str, Any], b: Mapping[str, Any],
                  reasons: list[str]) -> ColumnDiff:
    mean_a, mean_b = _float(a.get("mean")), _float(b.get("mean"))
    std_a, std_b = _float(a.get("std")), _float(b.get("std"))
    shift = ratio = None
    if mean_a is not None and mean_b is not None and std_a is not None:
        shift = (mean_b - mean_a) / std_a if std_a > 0 else (0.0 if mean_a == mean_b else None)
    if std_a and std_b is not None:
        ratio = std_b / std_a
    points_a, points_b = _quantile_points(a), _quantile_points(b)
    psi = _psi_numeric(points_a, points_b) if points_a and points_b else None
    if psi is not None and psi >= PSI_THRESHOLD:
        reasons.append(f"PSI {psi:.2f}")
    if shift is not None and abs(shift) >= MEAN_SHIFT_THRESHOLD:
        reasons.append(f"mean {mean_a:.4g} -> {mean_b:.4g} ({shift:+.2f} sd)")
    elif shift is None and mean_a is not None and mean_b is not None and mean_a != mean_b:
        reasons.append(f"mean {mean_a:.4g} -> {mean_b:.4g} (constant in the first version)")
    return replace(base, mean_a=mean_a, mean_b=mean_b, std_a=std_a, std_b=std_b,
                    mean_shift=_round(shift), std_ratio=_round(ratio), psi=_round(psi),
                    reasons=tuple(reasons))


def _diff_categorical(base: ColumnDiff, a: Mapping[str, Any], b: Mapping[str, Any],
                      reasons: list[str]) -> ColumnDiff:
    top_a, top_b = _counts(a.get("top")), _counts(b.get("top"))
    total_a, total_b = int(a.get("count", 0)), int(b.get("count", 0))
    # A profile keeps the 20 most frequent values: "new" and "vanished" are only sure
    # when the other side's list is complete.
    complete_a = int(a.get("unique", len(top_a))) <= len(top_a)
    complete_b = int(b.get("unique", len(top_b))) <= len(top_b)
    new = tuple(v for v in top_b if v not in top_a) if complete_a else ()
    vanished = tuple(v for v in top_a if v not in top_b) if complete_b else ()
    share_a = {v: c / total_a for v, c in top_a.items()} if total_a else {}
    share_b = {v: c / total_b for v, c in top_b.items()} if total_b else {}
    keys = list(dict.fromkeys([*share_a, *share_b]))
    moves = sorted(keys, key=lambda v: -abs(share_b.get(v, 0.0) - share_a.get(v, 0.0)))
    changes = {v: (round(share_a.get(v, 0.0), 6), round(share_b.get(v, 0.0), 6))
               for v in moves[:5] if share_a.get(v, 0.0) != share_b.get(v, 0.0)}
    psi = None
    if share_a and share_b:
        psi = _psi([*(share_a.get(v, 0.0) for v in keys), 1 - sum(share_a.values())],
                   [*(share_b.get(v, 0.0) for v in keys), 1 - sum(share_b.values())])
    if new:
        reasons.append("new values: " + _listing(new))
    if vanished:
        reasons.append("vanished values: " + _listing(vanished))
    if psi is not None and psi >= PSI_THRESHOLD:
        reasons.append(f"PSI {psi:.2f}")
    return replace(base, psi=_round(psi), new_values=new, vanished_values=vanished,
                    frequency_changes=changes, reasons=tuple(reasons))


def _quantile_points(stats: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """(values, levels) of the finest quantiles a profile holds."""
    for key, levels in (("percentiles", PERCENTILE_LEVELS), ("quantiles", QUANTILE_LEVELS)):
        values = stats.get(key)
        if isinstance(values, list) and len(values) == len(levels) \
                and all(_float(v) is not None for v in values):
            return [float(v) for v in values], list(levels)
    return None


def _psi_numeric(a: tuple[list[float], list[float]], b: tuple[list[float], list[float]]) -> float:
    """PSI over the bins cut by ``a``'s quantiles, plus one bin below and one above.

    Each side's share of a bin comes from its own quantiles, read as a piecewise-linear
    distribution function.
    """
    edges = sorted(set(a[0]))
    return _psi(_bin_shares(a, edges), _bin_shares(b, edges))


def _bin_shares(points: tuple[list[float], list[float]], edges: list[float]) -> list[float]:
    cdf = [_cdf(points, x) for x in edges]
    return [cdf[0], *(hi - lo for lo, hi in itertools.pairwise(cdf)), 1 - cdf[-1]]


def _cdf(points: tuple[list[float], list[float]], x: float) -> float:
    """The share of values <= x, interpolated between stored quantiles."""
    values, levels = points
    if x < values[0]:
        return 0.0
    if x >= values[-1]:
        return 1.0
    i = bisect.bisect_right(values, x) - 1  # values[i] <= x < values[i + 1]
    span = values[i + 1] - values[i]
    return levels[i] + (levels[i + 1] - levels[i]) * (x - values[i]) / span


def _psi(shares_a: list[float], shares_b: list[float]) -> float:
    total = 0.0
    for pa, pb in zip(shares_a, shares_b, strict=True):
        pa, pb = max(pa, _PSI_FLOOR), max(pb, _PSI_FLOOR)
        total += (pb - pa) * math.log(pb / pa)
    return total


def _counts(top: object) -> dict[str, int]:
    if not isinstance(top, Mapping):
        return {}
    return {str(k): int(v) for k, v in top.items() if isinstance(v, (int, float))}


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _signed(delta: int) -> str:
    return f"{delta:+d}"


def _listing(values: tuple[str, ...]) -> str:
    return ", ".join(values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")


__all__ = ["MEAN_SHIFT_THRESHOLD", "NULL_RATE_THRESHOLD", "PSI_THRESHOLD", "ColumnDiff",
           "DatasetDiff", "diff_datasets"]

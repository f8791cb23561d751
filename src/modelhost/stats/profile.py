"""Profiles: what a model's inputs and outputs look like, as histograms that add up.

A **reference profile** is built once, from a version's training data: per numeric
column the edges of its quantile bins and the rows in each, per categorical column the
most frequent categories and their counts, the null counts, and the same for the model's
own predictions on that data.

A **live profile** is one flat float64 vector laid out by a reference (:class:`Layout`):
request, error and row counts, a latency histogram, and per column the counts on the
reference's bins (plus nulls, values below and above the reference's range, categories
the reference never saw). Vectors of the same layout merge by addition, so the windows of
any number of workers and replicas sum to any time range, and accumulating a batch is a
handful of numpy calls per column, never a Python loop per row.

Pure numpy (and pandas' hashing of categories, imported on first use: a server worker
imports this module before it may import pandas); no I/O.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

# The quantiles a numeric column is binned on: every 2.5%, and finer in the tails, where
# a wide bin would make the Wasserstein distance (which assumes values spread evenly in a
# bin) err by up to 0.1 standard deviations instead of 0.01.
QUANTILES: tuple[float, ...] = tuple(sorted(
    {round(q, 4) for q in np.linspace(0.0, 1.0, 41)} | {0.001, 0.005, 0.01, 0.99, 0.995, 0.999}))
TOP_CATEGORIES = 50  # categories counted one by one; the rest of the known ones as "other"
KNOWN_CATEGORIES = 10_000  # categories remembered to tell "other" from "never seen"
FEW_VALUES = 5  # a numeric column with at most this many values is categorical (Evidently)
# Latency histogram edges, seconds: 0.1 ms to 30 s, 10 bins per factor of ten.
LATENCY_EDGES_S: tuple[float, ...] = tuple(
    float(x) for x in np.round(np.geomspace(1e-4, 30.0, 56), 7))

FORMAT = 1

_Floats = npt.NDArray[np.float64]

# Header of a live vector: these counts, then the latency histogram.
REQUESTS, ERRORS, ROWS, LATENCY_SUM, LATENCY_BINS = 0, 1, 2, 3, 4
HEADER = LATENCY_BINS + len(LATENCY_EDGES_S) + 1


@dataclass(frozen=True)
class NumericProfile:
    """A numeric column of the reference, binned on its own quantiles."""

    name: str
    edges: tuple[float, ...]  # increasing: the reference's min, quantiles, max
    counts: tuple[int, ...]  # reference rows per bin (len(edges) - 1 bins)
    nulls: int  # missing or not finite
    rows: int  # all rows, nulls included
    std: float  # of the non-null values (numpy's, ddof=0: Evidently's normalisation)
    distinct: int
    kind: Literal["numeric"] = field(default="numeric", init=False)

    @property
    def values(self) -> int:
        return self.rows - self.nulls

    def slots(self) -> int:
        """Its live counts: nulls, below, one per bin, above, sum below, sum above."""
        return len(self.counts) + 5


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical column (or a numeric one with few values) of the reference."""

    name: str
    categories: tuple[Any, ...]  # the most frequent first (str, or float when numeric)
    counts: tuple[int, ...]  # reference rows per category
    other: int  # reference rows in known categories beyond the top ones
    known: tuple[Any, ...]  # the categories beyond the top ones (at most KNOWN_CATEGORIES)
    nulls: int
    rows: int
    distinct: int
    numeric: bool  # the values are numbers (compared as floats, so 1 and 1.0 agree)
    # Reference rows of categories beyond the remembered ones (a column with more than
    # TOP_CATEGORIES + KNOWN_CATEGORIES values): live rows of those count as unseen, so
    # they are compared with these.
    forgotten: int = 0
    kind: Literal["categorical"] = field(default="categorical", init=False)

    @property
    def values(self) -> int:
        return self.rows - self.nulls

    def slots(self) -> int:
        """Its live counts: nulls, one per category, other, unseen."""
        return len(self.counts) + 3


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Reference:
    """The reference profile of a model version."""

    rows: int
    features: tuple[ColumnProfile, ...]
    prediction: ColumnProfile | None

    def feature(self, name: str) -> ColumnProfile | None:
        return next((f for f in self.features if f.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "rows": self.rows,
                "features": [_column_dict(f) for f in self.features],
                "prediction": _column_dict(self.prediction) if self.prediction else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown reference profile format {data.get('format')!r}")
        prediction = data.get("prediction")
        return cls(rows=int(data["rows"]),
                   features=tuple(_column_from(f) for f in data["features"]),
                   prediction=_column_from(prediction) if prediction else None)

    @property
    def digest(self) -> str:
        """Identifies the layout of live vectors built on this reference."""
        return hashlib.sha256(orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
                              ).hexdigest()[:16]


def _column_dict(c: ColumnProfile) -> dict[str, Any]:
    if isinstance(c, NumericProfile):
        return {"kind": c.kind, "name": c.name, "edges": list(c.edges),
                "counts": list(c.counts), "nulls": c.nulls, "rows": c.rows, "std": c.std,
                "distinct": c.distinct}
    return {"kind": c.kind, "name": c.name, "categories": list(c.categories),
            "counts": list(c.counts), "other": c.other, "known": list(c.known),
            "nulls": c.nulls, "rows": c.rows, "distinct": c.distinct, "numeric": c.numeric,
            "forgotten": c.forgotten}


def _column_from(d: Mapping[str, Any]) -> ColumnProfile:
    if d["kind"] == "numeric":
        return NumericProfile(
            name=str(d["name"]), edges=tuple(float(x) for x in d["edges"]),
            counts=tuple(int(x) for x in d["counts"]), nulls=int(d["nulls"]),
            rows=int(d["rows"]), std=float(d["std"]), distinct=int(d["distinct"]))
    numeric = bool(d["numeric"])
    cast = float if numeric else str
    return CategoricalProfile(
        name=str(d["name"]), categories=tuple(cast(x) for x in d["categories"]),
        counts=tuple(int(x) for x in d["counts"]), other=int(d["other"]),
        known=tuple(cast(x) for x in d["known"]), nulls=int(d["nulls"]),
        rows=int(d["rows"]), distinct=int(d["distinct"]), numeric=numeric,
        forgotten=int(d.get("forgotten", 0)))


# --- building a reference ---------------------------------------------------------------

def build_reference(columns: Mapping[str, Any], predictions: Any = None, *,
                    categorical_predictions: bool | None = None) -> Reference:
    """The reference profile of ``columns`` (name -> 1-D values, all of one length) and
    the model's ``predictions`` on them. Predictions are categorical when
    ``categorical_predictions`` says so (a classifier), else by the same rule as columns.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError("reference columns differ in length")
    rows = lengths.pop() if lengths else (0 if predictions is None else len(predictions))
    features = tuple(profile_column(str(name), values) for name, values in columns.items())
    prediction = None
    if predictions is not None:
        values = np.asarray(predictions)
        # One output column is profiled; several (multi-output models) are not.
        if values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1):
            prediction = profile_column("prediction", values.reshape(-1),
                                        categorical=categorical_predictions)
    return Reference(rows=rows, features=features, prediction=prediction)


def profile_column(name: str, values: Any, *,
                   categorical: bool | None = None) -> ColumnProfile:
    """One column's profile. Numeric columns with more than ``FEW_VALUES`` distinct
    values are binned on their quantiles; the others are counted by category."""
    raw = np.asarray(values)
    numeric = _numeric_or_none(raw) if categorical is not True else None
    if numeric is not None:
        finite = numeric[np.isfinite(numeric)]
        distinct = int(np.unique(finite).size)
        if categorical is False or distinct > FEW_VALUES:
            return _numeric_profile(name, finite, rows=len(raw), distinct=distinct)
        return _categorical_profile(name, finite, rows=len(raw), numeric=True)
    mask = _null_mask(raw)
    return _categorical_profile(name, raw[~mask].astype(str), rows=len(raw), numeric=False)


def _numeric_profile(name: str, finite: _Floats, *, rows: int,
                     distinct: int) -> NumericProfile:
    if finite.size == 0:
        return NumericProfile(name=name, edges=(), counts=(), nulls=rows, rows=rows,
                              std=0.0, distinct=0)
    edges = np.unique(np.quantile(finite, QUANTILES))
    if edges.size == 1:  # one value: a zero-width bin around it
        edges = np.array([edges[0], edges[0]])
    counts = _bin_counts(edges, finite)[1:-1]
    return NumericProfile(name=name, edges=tuple(float(e) for e in edges),
                          counts=tuple(int(c) for c in counts), nulls=rows - finite.size,
                          rows=rows, std=float(np.std(finite)), distinct=distinct)


def _categorical_profile(name: str, values: npt.NDArray[Any], *, rows: int,
                         numeric: bool) -> CategoricalProfile:
    uniques, counts = np.unique(values, return_counts=True)
    order = np.lexsort((uniques, -counts))  # most frequent first, ties by value
    uniques, counts = uniques[order], counts[order]
    cast = float if numeric else str
    top = min(TOP_CATEGORIES, uniques.size)
    remembered = top + KNOWN_CATEGORIES
    return CategoricalProfile(
        name=name, categories=tuple(cast(u) for u in uniques[:top]),
        counts=tuple(int(c) for c in counts[:top]),
        other=int(counts[top:remembered].sum()),
        known=tuple(cast(u) for u in uniques[top:remembered]),
        nulls=rows - int(values.size), rows=rows, distinct=int(uniques.size),
        numeric=numeric, forgotten=int(counts[remembered:].sum()))


# --- live vectors -----------------------------------------------------------------------

class Layout:
    """Where each count of a live vector is, for one reference (or none: then only the
    header: requests, errors, rows and latencies)."""

    def __init__(self, reference: Reference | None) -> None:
        self.reference = reference
        self.offsets: dict[str, int] = {}
        self._indexers: dict[str, Any] = {}  # pandas Index of the categories
        at = HEADER
        columns = list(reference.features) if reference else []
        if reference is not None and reference.prediction is not None:
            columns.append(reference.prediction)
        for column in columns:
            key = _PREDICTION if reference and column is reference.prediction \
                else column.name
            self.offsets[key] = at
            at += column.slots()
            if isinstance(column, CategoricalProfile):
                import pandas as pd

                self._indexers[key] = pd.Index(list(column.categories) + list(column.known))
        self.size = at
        self.digest = reference.digest if reference is not None else "none"

    def empty(self) -> _Floats:
        return np.zeros(self.size, dtype=np.float64)

    def add_requests(self, into: _Floats, *, latencies_s: _Floats, errors: int,
                     rows: int) -> None:
        into[REQUESTS] += latencies_s.size
        into[ERRORS] += errors
        into[ROWS] += rows
        into[LATENCY_SUM] += float(latencies_s.sum())
        bins = np.searchsorted(LATENCY_EDGES_S, latencies_s, side="right")
        into[LATENCY_BINS:HEADER] += np.bincount(bins, minlength=len(LATENCY_EDGES_S) + 1)

    def add_rows(self, into: _Floats, columns: Mapping[str, Any],
                 predictions: Any = None) -> None:
        """Count a batch: ``columns`` maps names to 1-D values (columns the reference
        does not know are ignored, ones it knows but the batch lacks count nothing)."""
        reference = self.reference
        if reference is None:
            return
        for column in reference.features:
            values = columns.get(column.name)
            if values is not None:
                self._add(into, column, column.name, values)
        if reference.prediction is not None and predictions is not None:
            values = np.asarray(predictions)
            if values.ndim > 1:
                values = values[:, 0]
            self._add(into, reference.prediction, _PREDICTION, values)

    def _add(self, into: _Floats, column: ColumnProfile, key: str, values: Any) -> None:
        at = self.offsets[key]
        raw = np.asarray(values)
        if isinstance(column, NumericProfile):
            numeric = _to_float(raw)
            finite = np.isfinite(numeric)
            into[at] += numeric.size - int(finite.sum())
            x = numeric[finite]
            if column.edges:
                counts = _bin_counts(np.asarray(column.edges), x)
                into[at + 1:at + 1 + counts.size] += counts
                low, high = column.edges[0], column.edges[-1]
                into[at + counts.size + 1] += float(x[x < low].sum())
                into[at + counts.size + 2] += float(x[x > high].sum())
            else:  # a reference with no values: everything is out of range ("above")
                into[at + 2] += x.size
            return
        if column.numeric:
            keys = _to_float(raw)
            present = np.isfinite(keys)
        else:
            present = ~_null_mask(raw)
            keys = raw[present].astype(str)
        into[at] += raw.size - int(present.sum())
        if column.numeric:
            keys = keys[present]
        codes = self._indexers[key].get_indexer(keys)
        top = len(column.categories)
        # code < top: that category; top <= code: "other" (known); -1: never seen.
        slot = np.where(codes < 0, top + 1, np.minimum(codes, top))
        into[at + 1:at + 1 + top + 2] += np.bincount(slot, minlength=top + 2)

    def column_counts(self, vector: _Floats, column: ColumnProfile,
                      *, prediction: bool = False) -> _Floats:
        """The live counts of one column, as :meth:`ColumnProfile.slots` describes."""
        at = self.offsets[_PREDICTION if prediction else column.name]
        return vector[at:at + column.slots()]


_PREDICTION = "\0prediction"  # the predictions' slot key: no column can be named so


def _bin_counts(edges: _Floats, x: _Floats) -> _Floats:
    """Counts of finite ``x`` on ``edges`` (at least two): [below edges[0], each bin,
    above edges[-1]]; a bin holds [left, right), the last one [left, right]."""
    bins = edges.size - 1
    below = x < edges[0]
    above = x > edges[-1]
    inside = x[~(below | above)]
    index = np.clip(np.searchsorted(edges, inside, side="right") - 1, 0, bins - 1)
    out = np.empty(bins + 2, dtype=np.float64)
    out[0] = below.sum()
    out[1:-1] = np.bincount(index, minlength=bins)
    out[-1] = above.sum()
    return out


def _numeric_or_none(raw: npt.NDArray[Any]) -> _Floats | None:
    """The values as floats when the column is numeric (bools are categorical)."""
    if raw.dtype.kind in "iuf":
        return raw.astype(np.float64)
    if raw.dtype.kind != "O":
        return None
    import pandas as pd

    converted: _Floats = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(
        dtype=np.float64)
    # Numeric only if every present value converted (a few strings make it categorical).
    if np.isnan(converted).sum() == _null_mask(raw).sum() and not any(
            isinstance(v, (str, bool, np.bool_)) for v in raw[:100]):
        return converted
    return None


def _to_float(raw: npt.NDArray[Any]) -> _Floats:
    if raw.dtype.kind in "iufb":
        return raw.astype(np.float64)
    import pandas as pd

    converted: _Floats = pd.to_numeric(pd.Series(raw.ravel()), errors="coerce").to_numpy(
        dtype=np.float64)
    return converted


def _null_mask(raw: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if raw.dtype.kind == "f":
        return np.asarray(~np.isfinite(raw))
    import pandas as pd

    mask: npt.NDArray[np.bool_] = np.asarray(pd.isna(raw), dtype=bool)
    return mask


def latency_quantile(histogram: Any, q: float) -> float | None:
    """The ``q`` quantile (0 to 1) of the latencies counted on ``LATENCY_EDGES_S``
    (``histogram``: a vector's ``[LATENCY_BINS:HEADER]``), in seconds: interpolated
    geometrically within its bin, so it is off by less than a bin's width (26%); None
    when nothing was counted."""
    counts = np.asarray(histogram, dtype=np.float64)
    total = float(counts.sum())
    if total <= 0:
        return None
    cumulative = np.cumsum(counts)
    target = q * total
    slot = int(np.searchsorted(cumulative, target, side="left"))
    edges = LATENCY_EDGES_S
    if slot == 0:  # below the first edge
        return edges[0]
    if slot >= len(edges):  # at or above the last
        return edges[-1]
    low, high = edges[slot - 1], edges[slot]
    inside = (target - float(cumulative[slot - 1])) / float(counts[slot])
    return float(low * (high / low) ** min(1.0, max(0.0, inside)))


def share(counts: _Floats) -> _Floats:
    total = float(counts.sum())
    return counts / total if total > 0 else np.zeros_like(counts)


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None

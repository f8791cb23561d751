"""Drift tests on binned profiles, chosen as Evidently chooses them by default.

Each test compares a column's reference counts (from :mod:`modelhost.stats.profile`) with
its live counts on the same bins, so it costs the same for a minute or a month of
traffic. The choice of test (Evidently's ``get_default_stattest``):

* reference of at most 1,000 rows: Kolmogorov-Smirnov for a numeric column (more than 5
  distinct values), the two-proportion z-test for a column with at most 2 values,
  chi-square for other categorical columns; drift when p < 0.05;
* a larger reference: the Wasserstein distance normed by the reference's standard
  deviation for a numeric column, the Jensen-Shannon distance for a categorical one;
  drift when the distance is at least 0.1.

PSI (population stability index) is computed on the same bins for every column and shown
beside the test, as a familiar second opinion; it does not decide.

Statistics from bins approximate those on raw values: the KS statistic is read at the bin
edges (46 quantile bins, so it can be lower by up to a bin's share, 2.5% of the
reference) and the Wasserstein distance assumes values spread evenly within a bin (values
outside the reference's range are exact: their sums are kept). The tests in
``tests/stats`` state the tolerances measured against scipy on raw data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelhost.stats.profile import ColumnProfile, NumericProfile

SMALL_REFERENCE = 1000  # rows: up to this, a statistical test; above, a distance
P_THRESHOLD = 0.05  # tests: drift when p < 0.05 (0.95 confidence)
DISTANCE_THRESHOLD = 0.1  # Wasserstein (normed) and Jensen-Shannon: drift when >= 0.1
PSI_THRESHOLD = 0.1
DRIFT_SHARE = 0.5  # the data set drifts when at least half of its columns do

_Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ColumnDrift:
    name: str
    type: str  # "numeric" | "categorical"
    test: str  # "ks" | "z" | "chisquare" | "wasserstein" | "jensenshannon"
    statistic: float | None  # None: no live values to compare
    p_value: float | None  # tests only
    threshold: float
    drifted: bool
    psi: float | None
    rows: int  # live values compared (nulls not counted)
    nulls: int  # live nulls
    out_of_range: int  # live values outside the reference's range, or never seen

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "test": self.test,
                "statistic": self.statistic, "p_value": self.p_value,
                "threshold": self.threshold, "drifted": self.drifted, "psi": self.psi,
                "rows": self.rows, "nulls": self.nulls, "out_of_range": self.out_of_range}


def choose_test(column: ColumnProfile, *, unseen: bool = False) -> str:
    """The test Evidently would choose for this column. ``unseen``: live data holds
    values the reference never had. Evidently counts them among the values; the counts
    do not say how many there are, so any makes it chi-square (never the z-test, which
    would compare only the first value's share)."""
    small = column.rows <= SMALL_REFERENCE
    if isinstance(column, NumericProfile):
        return "ks" if small else "wasserstein"
    if not small:
        return "jensenshannon"
    return "z" if column.distinct <= 2 and not unseen else "chisquare"


def column_drift(column: ColumnProfile, live: _Floats) -> ColumnDrift:
    """Drift of one column: ``live`` holds its counts as laid out by
    :meth:`modelhost.stats.profile.Layout.column_counts`."""
    nulls = int(live[0])
    if isinstance(column, NumericProfile):
        bins = len(column.counts)
        current = live[1:bins + 3]  # below, bins, above
        reference = np.concatenate(([0.0], np.asarray(column.counts, float), [0.0]))
        out_of_range = int(current[0] + current[-1])
        kind = "numeric"
    else:
        current = live[1:]  # categories, other, unseen
        reference = np.concatenate((np.asarray(column.counts, float),
                                    [column.other, column.forgotten]))
        out_of_range = int(current[-1])
        kind = "categorical"
    test = choose_test(column, unseen=out_of_range > 0 and kind == "categorical")
    rows = int(current.sum())
    threshold = DISTANCE_THRESHOLD if test in ("wasserstein", "jensenshannon") \
        else P_THRESHOLD
    if rows == 0 or reference.sum() == 0:
        return ColumnDrift(column.name, kind, test, None, None, threshold, False, None,
                           rows, nulls, out_of_range)
    p_value: float | None
    if test == "ks":
        statistic, p_value = ks(reference, current)
    elif test == "z":
        statistic, p_value = two_proportion_z(reference, current)
    elif test == "chisquare":
        statistic, p_value = chi_square(reference, current)
    elif test == "wasserstein":
        assert isinstance(column, NumericProfile)
        statistic = wasserstein_normed(column, live)
        p_value = None
    else:
        statistic, p_value = jensen_shannon(reference, current), None
    drifted = (p_value < P_THRESHOLD) if p_value is not None \
        else statistic >= DISTANCE_THRESHOLD
    return ColumnDrift(column.name, kind, test, _finite(statistic), p_value, threshold,
                       bool(drifted), _finite(psi(reference, current)), rows, nulls,
                       out_of_range)


def dataset_drift(columns: list[ColumnDrift]) -> tuple[bool, float]:
    """Whether the data set drifts (at least ``DRIFT_SHARE`` of the columns with live
    data drift), and the share that does."""
    tested = [c for c in columns if c.statistic is not None or c.rows > 0]
    if not tested:
        return False, 0.0
    share = sum(c.drifted for c in tested) / len(tested)
    return share >= DRIFT_SHARE, share


# --- the statistics, on aligned counts --------------------------------------------------

def ks(reference: _Floats, current: _Floats) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov on counts over the same ordered bins: the largest gap
    between the two cumulative shares at a bin edge, and scipy's asymptotic p-value
    (``ks_2samp(method="asymp")``: the one-sample distribution at n*m/(n+m))."""
    n, m = float(reference.sum()), float(current.sum())
    d = float(np.max(np.abs(np.cumsum(reference) / n - np.cumsum(current) / m)))
    en = round(n * m / (n + m))
    from scipy import stats as sps  # on first use: a server worker imports this module

    return d, float(np.clip(sps.kstwo.sf(d, max(en, 1)), 0.0, 1.0))


def two_proportion_z(reference: _Floats, current: _Floats) -> tuple[float, float]:
    """Two-proportion z-test (pooled) on the share of the first value that either sample
    has, as Evidently's ``z`` test; the p-value is two-sided."""
    n1, n2 = float(reference.sum()), float(current.sum())
    present = np.flatnonzero((reference + current) > 0)
    if present.size <= 1:  # one value on both sides: nothing differs
        return 0.0, 1.0
    first = present[0]
    p1, p2 = reference[first] / n1, current[first] / n2
    pooled = (reference[first] + current[first]) / (n1 + n2)
    spread = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    z = (p1 - p2) / spread
    from scipy import stats as sps

    return float(z), float(2.0 * sps.norm.sf(abs(z)))


def chi_square(reference: _Floats, current: _Floats) -> tuple[float, float]:
    """Pearson's chi-square of the live counts against the reference's shares scaled to
    the live total (Evidently's ``chisquare``), over the values either side has; a value
    the reference never had makes it infinite (p = 0)."""
    present = (reference + current) > 0
    observed = current[present]
    expected = reference[present] * (current.sum() / reference.sum())
    if observed.size <= 1:
        return 0.0, 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (observed - expected) ** 2 / expected,
                         np.where(observed > 0, np.inf, 0.0))
    statistic = float(terms.sum())
    from scipy import stats as sps

    return statistic, float(sps.chi2.sf(statistic, observed.size - 1))


def jensen_shannon(reference: _Floats, current: _Floats) -> float:
    """Jensen-Shannon distance (natural log, as scipy's) between the two shares, with
    empty bins filled as for PSI (Evidently's Jensen-Shannon does not fill them: the
    difference is below 0.002, measured in ``tests/stats``)."""
    p, q = _filled(reference), _filled(current)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    divergence = (np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m))) / 2.0
    return float(math.sqrt(max(divergence, 0.0)))


def psi(reference: _Floats, current: _Floats) -> float:
    """Population stability index: sum of (ref - cur) * ln(ref / cur) over the shares,
    empty bins filled as Evidently fills them."""
    p, q = _filled(reference), _filled(current)
    return float(np.sum((p - q) * np.log(p / q)))


def wasserstein_normed(column: NumericProfile, live: _Floats) -> float:
    """The Wasserstein-1 distance between the reference and the live values, divided by
    the reference's standard deviation (at least 0.001, as Evidently).

    Inside the reference's range, each bin's values are taken as spread evenly, so both
    cumulative distributions are linear within a bin and the area between them is exact
    for that assumption; below and above the range the kept sums make it exact."""
    edges = np.asarray(column.edges)
    bins = len(column.counts)
    nulls_below_bins = live[1:bins + 2]
    below, inside = float(nulls_below_bins[0]), nulls_below_bins[1:]
    above = float(live[bins + 2])
    sum_below, sum_above = float(live[bins + 3]), float(live[bins + 4])
    m = below + float(inside.sum()) + above
    n = float(sum(column.counts))
    reference = np.asarray(column.counts, float) / n
    current = inside / m
    widths = np.diff(edges)
    start = below / m + np.concatenate(([0.0], np.cumsum(current - reference)[:-1]))
    end = start + current - reference
    area = float(np.sum(_area_abs_linear(start, end, widths)))
    area += (below * edges[0] - sum_below) / m + (sum_above - above * edges[-1]) / m
    return float(area / max(column.std, 0.001))


def _area_abs_linear(d0: _Floats, d1: _Floats, width: _Floats) -> _Floats:
    """The integral of |d| over each bin where d goes linearly from d0 to d1."""
    same_sign = d0 * d1 >= 0
    total = np.abs(d0) + np.abs(d1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(total > 0, (d0 ** 2 + d1 ** 2) / (2.0 * total), 0.0)
    return width * np.where(same_sign, total / 2.0, crossing)


def _filled(counts: _Floats) -> _Floats:
    """Shares with empty bins set to a small positive number (Evidently's
    ``get_binned_data``: 0.0001, or a millionth of the smallest share if that is
    smaller)."""
    shares = counts / counts.sum()
    positive = shares[shares > 0]
    smallest = float(positive.min()) if positive.size else 1.0
    fill = smallest / 1e6 if smallest <= 0.0001 else 0.0001
    return np.where(shares > 0, shares, fill)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None

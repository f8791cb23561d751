"""modelhost.stats.drift: drift tests on binned profiles agree with the same tests on raw
data (scipy), and decide as Evidently's default tests decide.

Tolerances, measured on the seeded samples below (worst error seen in brackets):

* Kolmogorov-Smirnov: the binned statistic is read at bin edges, so it is never above the
  raw one (beyond float noise, ``KS_ABOVE``; seen: never above at all) and at most the
  largest reference bin's share below it. Over normal, exponential, lognormal and uniform
  data (reference 500 and 1,000 rows, current 2,000) it is within ``KS_BELOW`` = 0.025
  [0.0165 on these seeds; 0.020 over 20 other seeds, exponential shifted by one standard
  deviation]. When the two statistics are equal the p-value is scipy's
  ``ks_2samp(method="asymp")`` one (``rtol`` 1e-9).
* Wasserstein distance normed by the reference's standard deviation (reference 5,000 rows):
  within ``WASSERSTEIN_TOLERANCE`` = 0.03 of scipy's on raw data [0.020 on these seeds,
  lognormal; 0.025 over 20 other seeds, lognormal scaled by 1.5: a long right tail in
  few, wide bins], within ``WASSERSTEIN_TOLERANCE_LIGHT_TAILS`` = 0.015 for normal and uniform data
  [0.0097]. Binning on plain 2.5% quantiles instead errs by 0.07 on average (0.03 to 0.11)
  on a normal reference shifted by one standard deviation.
* Chi-square, the two-proportion z-test and PSI on categories: exact (``rtol`` 1e-9) as long
  as every category is counted one by one (at most ``TOP_CATEGORIES``); beyond, the
  chi-square statistic is a lower bound of the raw one.
* Jensen-Shannon: scipy's ``jensenshannon`` on the shares filled as Evidently fills them
  (``rtol`` 1e-9 on the live slots; ``JS_FILLED_TOLERANCE`` = 1e-4 on raw value counts,
  where the layout's empty "other" and "unseen" slots are filled too [2.2e-5]). Evidently's
  own Jensen-Shannon test does not fill (``get_binned_data(..., feel_zeroes=False)``);
  against it the distance is within ``JS_EVIDENTLY_TOLERANCE`` = 0.005 [0.0017, with a live
  category the reference never had].
* Decisions: in 113 seeded cases over every default test (16 of them borderline) the
  binned decision is the raw one in all [113 of 113].

Evidently itself cannot be imported here (0.7.23 fails on pandas 3 with ``ImportError:
cannot import name 'infer_dtype_from_object'``), so ``evidently_default`` below restates its
default tests on raw data from its published source (``legacy/calculations/stattests``).
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial import distance

from modelhost.stats import profile
from modelhost.stats.drift import (
    DISTANCE_THRESHOLD,
    P_THRESHOLD,
    SMALL_REFERENCE,
    ColumnDrift,
    choose_test,
    column_drift,
    dataset_drift,
    jensen_shannon,
    ks,
    psi,
    wasserstein_normed,
)
from modelhost.stats.profile import (
    KNOWN_CATEGORIES,
    TOP_CATEGORIES,
    CategoricalProfile,
    ColumnProfile,
    Layout,
    NumericProfile,
    Reference,
    profile_column,
)

Floats = npt.NDArray[np.float64]

KS_BELOW = 0.025  # binned KS statistic at most this much below the raw one
KS_ABOVE = 1e-9  # ... and never above it beyond float noise
WASSERSTEIN_TOLERANCE = 0.03  # |binned - raw| of the normed distance, all distributions
WASSERSTEIN_TOLERANCE_LIGHT_TAILS = 0.015  # the same for normal and uniform data
NAIVE_WASSERSTEIN_ERROR = 0.05  # plain 2.5% quantile bins err by more than this on average
EXACT = 1e-9  # rtol where the binned statistic is the raw one
JS_FILLED_TOLERANCE = 1e-4  # vs scipy on raw shares filled as Evidently fills them
JS_EVIDENTLY_TOLERANCE = 0.005  # vs Evidently's Jensen-Shannon test (no filling)
BORDER_P = (0.02, 0.1)  # raw p-values in here are too close to 0.05 to demand agreement
BORDER_DISTANCE = (0.08, 0.12)  # raw distances in here are too close to 0.1
AGREEMENT = 0.95  # share of all cases, borderline included, decided as on raw data

CURRENT_ROWS = 2000
SEEDS = range(4)
SHIFTS = ((0.0, 1.0), (0.1, 1.0), (0.3, 1.0), (1.0, 1.0), (0.0, 1.5))  # (shift in sd, scale)

Sampler = Callable[[np.random.Generator, int], Floats]
DISTRIBUTIONS: dict[str, Sampler] = {
    "normal": lambda rng, n: rng.normal(0.0, 1.0, n),
    "exponential": lambda rng, n: rng.exponential(1.0, n),
    "lognormal": lambda rng, n: rng.lognormal(0.0, 1.0, n),
    "uniform": lambda rng, n: rng.uniform(0.0, 1.0, n),
}


# --- helpers ------------------------------------------------------------------------------

def _profile(name: str, values: Any, *, categorical: bool | None = None) -> Reference:
    column = profile_column(name, values, categorical=categorical)
    return Reference(rows=column.rows, features=(column,), prediction=None)


def _live(reference: Reference, columns: Mapping[str, Any]) -> tuple[ColumnProfile, Floats]:
    layout = Layout(reference)
    vector = layout.empty()
    layout.add_rows(vector, columns)
    column = reference.features[0]
    return column, layout.column_counts(vector, column)


def _drift(ref: Any, cur: Any, *, categorical: bool | None = None) -> ColumnDrift:
    column, live = _live(_profile("x", ref, categorical=categorical), {"x": cur})
    return column_drift(column, live)


def _sample(dist: str, seed: int, n_ref: int, shift: float, scale: float
            ) -> tuple[Floats, Floats]:
    """A reference and a current sample; the current one moved by ``shift`` reference
    standard deviations and stretched by ``scale``."""
    rng = np.random.default_rng([seed, n_ref, len(dist)])
    ref = DISTRIBUTIONS[dist](rng, n_ref)
    cur = DISTRIBUTIONS[dist](rng, CURRENT_ROWS) * scale + shift * float(np.std(ref))
    return ref, cur


def _raw_wasserstein(ref: Floats, cur: Floats) -> float:
    return float(sps.wasserstein_distance(ref, cur)) / max(float(np.std(ref)), 0.001)


def _value_counts(ref: Any, cur: Any) -> tuple[Floats, Floats]:
    """Raw value counts of both samples over the union of their values (Evidently's
    ``keys``), nulls dropped."""
    reference, current = pd.Series(ref).dropna(), pd.Series(cur).dropna()
    keys = sorted(set(reference.unique()) | set(current.unique()))
    r, c = reference.value_counts(), current.value_counts()
    return (np.array([float(r.get(k, 0)) for k in keys]),
            np.array([float(c.get(k, 0)) for k in keys]))


def _evidently_fill(shares: Floats) -> Floats:
    """``get_binned_data(..., feel_zeroes=True)``: zero shares set to 0.0001, or to a
    millionth of the smallest positive share when that is at most 0.0001."""
    smallest = float(shares[shares != 0].min())
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(shares == 0, fill, shares)


# --- Evidently's default tests, on raw data ---------------------------------------------

@dataclass(frozen=True)
class RawDecision:
    test: str
    score: float  # p-value of a test, or a distance
    drifted: bool

    @property
    def borderline(self) -> bool:
        low, high = BORDER_P if self.test in ("ks", "z", "chisquare") else BORDER_DISTANCE
        return low <= self.score <= high


def evidently_default(ref: Any, cur: Any, *, numeric: bool) -> RawDecision:
    """Evidently's default drift test (``get_default_stattest`` and the test functions in
    ``evidently/legacy/calculations/stattests``) on raw, null-free samples.

    Not restated: ``get_binned_data``'s Sturges histogram for numeric data with more than
    20 reference values, which the default tests never reach (such a column gets KS or
    Wasserstein, Jensen-Shannon only when the two samples hold at most 5 values)."""
    reference, current = pd.Series(ref), pd.Series(cur)
    n_values = pd.concat([reference, current]).nunique()
    if len(reference) <= 1000:
        if numeric and n_values > 5:
            p = float(sps.ks_2samp(ref, cur).pvalue)
            return RawDecision("ks", p, p <= P_THRESHOLD)  # ks_stattest.py: p <= threshold
        if n_values > 2:
            p = _evidently_chisquare(reference, current)
            return RawDecision("chisquare", p, p < P_THRESHOLD)
        p = _evidently_z(reference, current)
        return RawDecision("z", p, p < P_THRESHOLD)
    if numeric and n_values > 5:
        d = _raw_wasserstein(np.asarray(ref, float), np.asarray(cur, float))
        return RawDecision("wasserstein", d, d >= DISTANCE_THRESHOLD)
    r, c = _value_counts(reference, current)
    d = float(distance.jensenshannon(r / r.sum(), c / c.sum()))  # feel_zeroes=False
    return RawDecision("jensenshannon", d, d >= DISTANCE_THRESHOLD)


def _evidently_chisquare(reference: pd.Series, current: pd.Series) -> float:
    r, c = _value_counts(reference, current)
    expected = r * (len(current) / len(reference))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a value the reference lacks: inf
        return float(sps.chisquare(c, expected).pvalue)


def _evidently_z(reference: pd.Series, current: pd.Series) -> float:
    if (reference.nunique() == 1 and current.nunique() == 1
            and reference.unique()[0] == current.unique()[0]):
        return 1.0
    z, _ = _hand_z(reference, current)
    return float(2 * (1 - sps.norm.cdf(abs(z))))


def _hand_z(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """The pooled two-proportion z of the first (sorted) value, and its two-sided p."""
    key = sorted(set(reference.unique()) | set(current.unique()))[0]
    n1, n2 = len(reference), len(current)
    x1, x2 = float((reference == key).sum()), float((current == key).sum())
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return z, float(2 * sps.norm.sf(abs(z)))


# --- Kolmogorov-Smirnov -----------------------------------------------------------------

@pytest.mark.parametrize("n_ref", [500, 1000])
@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_ks_statistic_is_the_raw_one_read_at_bin_edges(dist: str, n_ref: int) -> None:
    """Binned D <= raw D + ``KS_ABOVE``, and raw D - binned D <= the largest reference bin
    share (a CDF gap can grow inside a bin only by what the reference puts there) and
    <= ``KS_BELOW``; the p-value never claims more drift than the raw asymptotic one."""
    worst = 0.0
    for seed in SEEDS:
        for shift, scale in SHIFTS:
            ref, cur = _sample(dist, seed, n_ref, shift, scale)
            result = _drift(ref, cur)
            assert result.test == "ks" and result.statistic is not None
            assert result.p_value is not None
            raw = sps.ks_2samp(ref, cur, method="asymp")
            column = _profile("x", ref).features[0]
            assert isinstance(column, NumericProfile)
            widest = max(column.counts) / sum(column.counts)
            assert result.statistic <= raw.statistic + KS_ABOVE
            assert raw.statistic - result.statistic <= widest + KS_ABOVE
            assert result.p_value >= raw.pvalue - EXACT
            worst = max(worst, raw.statistic - result.statistic)
    assert worst <= KS_BELOW


def test_ks_p_value_is_scipys_asymptotic_one_when_the_statistics_agree() -> None:
    """On integer data the quantile edges fall on the values, so the binned statistic is
    usually the raw one; then the p-value is ``ks_2samp(method="asymp")``'s."""
    compared = 0
    for seed in range(8):
        rng = np.random.default_rng([7, seed])
        ref = rng.integers(0, 12, 800).astype(float)
        cur = np.minimum(rng.integers(0, 12, 1500) + (rng.random(1500) < 0.04 * seed), 11)
        result = _drift(ref, cur.astype(float))
        raw = sps.ks_2samp(ref, cur, method="asymp")
        assert result.statistic is not None and result.p_value is not None
        if abs(result.statistic - raw.statistic) <= KS_ABOVE:
            assert result.p_value == pytest.approx(raw.pvalue, rel=EXACT, abs=1e-300)
            compared += 1
    assert compared >= 5


def test_ks_on_identical_samples_is_zero_with_p_one() -> None:
    ref = np.random.default_rng(3).normal(size=600)
    result = _drift(ref, ref)
    assert result.statistic == 0.0 and result.p_value == 1.0 and not result.drifted
    assert result.psi == pytest.approx(0.0, abs=1e-12)


def test_ks_counts_values_outside_the_reference_range() -> None:
    """Live values below and above the reference's range move the cumulative shares at
    the first and last edges: all-above live data is as far as it gets (D = 1)."""
    ref = np.random.default_rng(4).normal(size=500)
    result = _drift(ref, ref.max() + 1.0 + np.arange(300.0))
    assert result.statistic == 1.0 and result.drifted and result.out_of_range == 300
    d, p = ks(np.array([0.0, 5.0, 5.0, 0.0]), np.array([2.0, 3.0, 3.0, 2.0]))
    assert d == pytest.approx(0.2) and p == pytest.approx(
        float(sps.kstwo.sf(0.2, round(10 * 10 / 20))), rel=EXACT)


# --- Wasserstein ----------------------------------------------------------------------------

@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_wasserstein_matches_scipy_on_raw_data(dist: str) -> None:
    """|binned - ``wasserstein_distance(ref, cur) / np.std(ref)``| <= 0.03 (0.015 for
    normal and uniform data), reference 5,000 rows, current 2,000."""
    tolerance = WASSERSTEIN_TOLERANCE_LIGHT_TAILS if dist in ("normal", "uniform") \
        else WASSERSTEIN_TOLERANCE
    for seed in SEEDS:
        for shift, scale in SHIFTS:
            ref, cur = _sample(dist, seed, 5000, shift, scale)
            result = _drift(ref, cur)
            assert result.test == "wasserstein" and result.statistic is not None
            assert result.p_value is None and result.threshold == DISTANCE_THRESHOLD
            assert result.statistic == pytest.approx(_raw_wasserstein(ref, cur),
                                                     abs=tolerance)


def test_wasserstein_is_the_area_between_the_piecewise_linear_cdfs() -> None:
    """Independently of scipy: the distance is the integral of |F_ref - F_cur| where
    both CDFs are linear inside each bin, plus the exact areas beyond the range (from the
    kept sums), over the reference's standard deviation. Checked by a fine trapezoid."""
    rng = np.random.default_rng(11)
    ref = rng.normal(size=3000)
    cur = np.concatenate([rng.normal(0.3, 1.4, 1500), [-9.0, -7.5, 8.0, 12.0, 20.0]])
    reference = _profile("x", ref)
    column, live = _live(reference, {"x": cur})
    assert isinstance(column, NumericProfile)
    edges = np.asarray(column.edges)
    counts = np.asarray(column.counts, float)
    low, high = edges[0], edges[-1]
    below, above = cur[cur < low], cur[cur > high]
    inside = cur[(cur >= low) & (cur <= high)]
    m = cur.size
    ref_at_edges = np.concatenate([[0.0], np.cumsum(counts)]) / counts.sum()
    binned = np.histogram(inside, bins=edges)[0]  # numpy: [left, right), last closed
    cur_at_edges = (below.size + np.concatenate([[0.0], np.cumsum(binned)])) / m
    grid = np.concatenate([np.linspace(a, b, 400, endpoint=False)
                           for a, b in itertools.pairwise(edges)] + [[high]])
    gap = np.abs(np.interp(grid, edges, ref_at_edges) - np.interp(grid, edges, cur_at_edges))
    area = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(grid)))
    area += float(np.sum(low - below)) / m + float(np.sum(above - high)) / m
    expected = area / float(np.std(ref))
    assert wasserstein_normed(column, live) == pytest.approx(expected, rel=1e-5)
    assert column_drift(column, live).out_of_range == below.size + above.size


def test_wasserstein_is_zero_for_the_reference_itself() -> None:
    ref = np.random.default_rng(5).lognormal(size=2000)
    result = _drift(ref, ref)
    assert result.statistic == pytest.approx(0.0, abs=1e-12) and not result.drifted


def test_plain_quantile_bins_would_err_in_the_tails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the shipped QUANTILES add finer tail quantiles: on plain 2.5% quantiles the
    outermost bins are wide, values are not spread evenly in them, and the Wasserstein
    distance of a normal reference (5,000 rows) shifted by one standard deviation errs by
    more than ``NAIVE_WASSERSTEIN_ERROR`` on average (0.07 measured, 0.03 to 0.11), worse
    than the shipped quantiles on every seed, which stay within the stated tolerance."""
    samples = [_sample("normal", seed, 5000, 1.0, 1.0) for seed in range(8)]
    shipped = [abs((_drift(r, c).statistic or 0.0) - _raw_wasserstein(r, c))
               for r, c in samples]
    monkeypatch.setattr(profile, "QUANTILES", tuple(np.linspace(0.0, 1.0, 41)))
    naive = [abs((_drift(r, c).statistic or 0.0) - _raw_wasserstein(r, c))
             for r, c in samples]
    assert max(shipped) <= WASSERSTEIN_TOLERANCE_LIGHT_TAILS
    assert float(np.mean(naive)) > NAIVE_WASSERSTEIN_ERROR
    assert all(n > s for n, s in zip(naive, shipped, strict=True))


# --- chi-square, z, Jensen-Shannon, PSI on categories -----------------------------------

def _categorical_sample(seed: int, k: int, n_ref: int, n_cur: int, mix: float
                        ) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.str_]]:
    """Strings from ``k`` categories; the current shares are the reference's moved by
    ``mix`` towards another random distribution."""
    rng = np.random.default_rng([seed, k, n_ref, int(mix * 1000)])
    names = np.array([f"c{i:02d}" for i in range(k)])
    shares = rng.dirichlet(np.full(k, 2.0))
    moved = (1 - mix) * shares + mix * rng.dirichlet(np.full(k, 2.0))
    return rng.choice(names, n_ref, p=shares), rng.choice(names, n_cur, p=moved)


@pytest.mark.parametrize("k", [3, 7, 20, TOP_CATEGORIES])
def test_chi_square_is_scipys_on_raw_value_counts(k: int) -> None:
    """Up to ``TOP_CATEGORIES`` categories each has its own slot, so the statistic and
    p-value are ``scipy.stats.chisquare`` of the live counts against the reference's
    scaled to the live total (Evidently's ``chisquare``), to ``rtol`` 1e-9."""
    for seed in SEEDS:
        for mix in (0.0, 0.1, 0.5):
            ref, cur = _categorical_sample(seed, k, 900, 1200, mix)
            ref_counts, cur_counts = _value_counts(ref, cur)
            if not np.all(ref_counts > 0):  # a live-only category: infinite, tested below
                continue
            expected = sps.chisquare(cur_counts, ref_counts * (cur.size / ref.size))
            result = _drift(ref, cur)
            assert result.test == "chisquare"
            assert result.statistic == pytest.approx(expected.statistic, rel=EXACT)
            assert result.p_value == pytest.approx(expected.pvalue, rel=EXACT, abs=1e-300)


def test_chi_square_with_more_categories_than_slots_is_a_lower_bound() -> None:
    """Beyond ``TOP_CATEGORIES`` the rarer known categories share one "other" slot; merging
    cells never raises Pearson's statistic, so the binned one is at most the raw one."""
    for seed in SEEDS:
        ref, cur = _categorical_sample(seed, 80, 1000, 3000, 0.3)
        cur = cur[np.isin(cur, ref)]  # no live-only category (that one is infinite)
        ref_counts, cur_counts = _value_counts(ref, cur)
        assert ref_counts.size > TOP_CATEGORIES
        raw = sps.chisquare(cur_counts, ref_counts * (cur.size / ref.size)).statistic
        result = _drift(ref, cur)
        assert result.test == "chisquare" and result.statistic is not None
        assert 0.0 < result.statistic <= raw * (1 + EXACT)


def test_an_unseen_category_makes_chi_square_infinite() -> None:
    """A live value the reference never had: expected 0, observed > 0, so the statistic
    is infinite (reported as None: JSON has no infinity), p = 0, and the column drifts,
    as ``scipy.stats.chisquare`` on the raw counts says."""
    rng = np.random.default_rng(12)
    ref = rng.choice(["a", "b", "c"], 500)
    cur = np.concatenate([rng.choice(["a", "b", "c"], 400), ["zz"] * 3, [None] * 2])
    result = _drift(ref, cur)
    assert (result.test, result.statistic, result.p_value) == ("chisquare", None, 0.0)
    assert result.drifted and result.out_of_range == 3 and result.nulls == 2
    assert result.rows == 403
    assert evidently_default(ref, cur[:403], numeric=False) == RawDecision("chisquare", 0.0,
                                                                           True)
    json.dumps(result.to_dict(), allow_nan=False)  # no inf, no NaN


def test_an_unseen_value_beside_a_single_known_one_is_a_chi_square() -> None:
    """One reference value plus one never seen: Evidently counts two values and runs the
    z-test. The counts cannot tell one new value from several, so any new value makes it
    chi-square (infinite: drift), a deliberate difference; the decision is the same."""
    ref = np.array(["a"] * 300)
    cur = np.array(["a"] * 250 + ["b"] * 50)
    result = _drift(ref, cur)
    _, p = _hand_z(pd.Series(ref), pd.Series(cur))
    assert result.test == "chisquare" and result.drifted and result.p_value == 0.0
    assert p < 0.05  # Evidently's z-test drifts too


@pytest.mark.parametrize("labels", [("no", "yes"), (0.0, 1.0), (True, False)])
def test_z_test_is_the_pooled_two_proportion_z(labels: tuple[Any, Any]) -> None:
    """|z| and the two-sided p equal a hand computation on the raw values (the sign depends
    on which value is "first": the most frequent one here, the smallest in Evidently)."""
    for seed in SEEDS:
        for p_cur in (0.3, 0.34, 0.4, 0.6):
            rng = np.random.default_rng([seed, int(p_cur * 100)])
            ref = np.where(rng.random(700) < 0.3, labels[0], labels[1])
            cur = np.where(rng.random(1300) < p_cur, labels[0], labels[1])
            result = _drift(ref, cur)
            z, p = _hand_z(pd.Series(ref), pd.Series(cur))
            assert result.test == "z"
            assert abs(result.statistic or 0.0) == pytest.approx(abs(z), rel=EXACT)
            assert result.p_value == pytest.approx(p, rel=EXACT, abs=1e-300)
            assert result.drifted == (p < P_THRESHOLD)
            assert result.p_value == pytest.approx(_evidently_z(pd.Series(ref),
                                                                pd.Series(cur)), abs=1e-12)


def test_z_test_on_one_value_on_both_sides_is_no_drift() -> None:
    result = _drift(np.array(["a"] * 100), np.array(["a"] * 40))
    assert (result.test, result.statistic, result.p_value, result.drifted) == (
        "z", 0.0, 1.0, False)


@pytest.mark.parametrize("k", [2, 4, 12])
def test_jensen_shannon_is_scipys_on_filled_shares(k: int) -> None:
    """On the live slots, the distance is ``scipy.spatial.distance.jensenshannon`` of the
    shares filled as Evidently fills them (``rtol`` 1e-9). On the raw value counts (the
    layout also fills its empty "other" and "unseen" slots) it is within
    ``JS_FILLED_TOLERANCE``, and within ``JS_EVIDENTLY_TOLERANCE`` of Evidently's own
    Jensen-Shannon test, which does not fill."""
    worst_filled = worst_evidently = 0.0
    for seed in SEEDS:
        for mix in (0.0, 0.1, 0.3, 0.7):
            ref, cur = _categorical_sample(seed, k, 3000, 2000, mix)
            if seed == 0:  # a category the reference never had
                cur = np.concatenate([cur, ["new"] * 40])
            column, live = _live(_profile("x", ref), {"x": cur})
            assert isinstance(column, CategoricalProfile)
            result = column_drift(column, live)
            assert result.test == "jensenshannon" and result.p_value is None
            assert result.statistic is not None
            slots_ref = np.concatenate([np.asarray(column.counts, float), [column.other, 0]])
            slots_cur = np.asarray(live[1:], float)
            on_slots = distance.jensenshannon(_evidently_fill(slots_ref / slots_ref.sum()),
                                              _evidently_fill(slots_cur / slots_cur.sum()))
            assert result.statistic == pytest.approx(on_slots, rel=EXACT, abs=1e-15)
            r, c = _value_counts(ref, cur)
            filled = distance.jensenshannon(_evidently_fill(r / r.sum()),
                                            _evidently_fill(c / c.sum()))
            evidently = evidently_default(ref, cur, numeric=False)
            assert evidently.test == "jensenshannon"
            worst_filled = max(worst_filled, abs(result.statistic - filled))
            worst_evidently = max(worst_evidently, abs(result.statistic - evidently.score))
    assert worst_filled <= JS_FILLED_TOLERANCE
    assert worst_evidently <= JS_EVIDENTLY_TOLERANCE


def test_psi_is_evidentlys_on_filled_category_shares() -> None:
    """PSI = sum((ref - cur) * ln(ref / cur)) over the filled shares, not renormalised
    (Evidently's ``psi``). With every share above 0.0001 both sides fill empty slots with
    0.0001, so the layout's slots empty on both sides add nothing: exact."""
    for seed in SEEDS:
        for mix in (0.0, 0.2, 0.6):
            ref, cur = _categorical_sample(seed, 6, 800, 1000, mix)
            cur = np.concatenate([cur, ["new"] * seed])
            r, c = _value_counts(ref, cur)
            p, q = _evidently_fill(r / r.sum()), _evidently_fill(c / c.sum())
            expected = float(np.sum((p - q) * np.log(p / q)))
            assert _drift(ref, cur).psi == pytest.approx(expected, rel=EXACT, abs=1e-15)
    assert psi(np.array([5.0, 5.0]), np.array([5.0, 5.0])) == 0.0


def test_tiny_shares_fill_with_a_millionth_of_the_smallest() -> None:
    """A share of at most 0.0001 (1 row in 20,000) makes that side fill its empty slots
    with a millionth of it (Evidently's rule): exact on the live slots. Against Evidently
    on the raw value counts, the layout's "other" slot, empty on both sides but filled
    differently on each (5e-11 and 0.0001), adds 0.0015 to PSI and 1e-4 to the distance."""
    ref = np.array(["a"] * 19_999 + ["b"] * 1)
    cur = np.array(["a"] * 900 + ["c"] * 100)
    column, live = _live(_profile("x", ref), {"x": cur})
    assert isinstance(column, CategoricalProfile)
    result = column_drift(column, live)
    slots_ref = np.array([19_999.0, 1.0, 0.0, 0.0])  # a, b, other, unseen
    assert np.array_equal(live[1:], [900.0, 0.0, 0.0, 100.0])
    p = _evidently_fill(slots_ref / slots_ref.sum())
    q = _evidently_fill(live[1:] / live[1:].sum())
    assert p[2] == pytest.approx(5e-11) and q[1] == 0.0001
    assert result.psi == pytest.approx(float(np.sum((p - q) * np.log(p / q))), rel=EXACT)
    assert result.statistic == pytest.approx(distance.jensenshannon(p, q), rel=EXACT)
    r, c = _value_counts(ref, cur)
    raw_p, raw_q = _evidently_fill(r / r.sum()), _evidently_fill(c / c.sum())
    raw_psi = float(np.sum((raw_p - raw_q) * np.log(raw_p / raw_q)))
    assert result.psi == pytest.approx(raw_psi, abs=0.002)
    assert result.statistic == pytest.approx(distance.jensenshannon(raw_p, raw_q), abs=2e-4)


def test_jensen_shannon_of_equal_and_of_disjoint_shares() -> None:
    assert jensen_shannon(np.array([3.0, 1.0, 0.0]), np.array([6.0, 2.0, 0.0])) == \
        pytest.approx(0.0, abs=1e-12)
    disjoint = jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert disjoint == pytest.approx(math.sqrt(math.log(2)), rel=1e-3)


# --- decisions agree with Evidently's on raw data -----------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    ref: npt.NDArray[Any]
    cur: npt.NDArray[Any]
    numeric: bool


def _agreement_cases() -> list[Case]:
    """About a hundred seeded cases over every default test, from no shift to plain drift,
    many of them near the thresholds."""
    cases: list[Case] = []
    for i, dist in enumerate(sorted(DISTRIBUTIONS)):
        for n_ref in (500, 1000):
            for shift in (0.0, 0.05, 0.1, 0.15, 0.3):
                ref, cur = _sample(dist, 100 + i, n_ref, shift, 1.0)
                cases.append(Case(f"ks-{dist}-{n_ref}-{shift}", ref, cur, True))
        for shift, scale in ((0.0, 1.0), (0.05, 1.0), (0.1, 1.0), (0.15, 1.0), (0.0, 1.3)):
            ref, cur = _sample(dist, 200 + i, 5000, shift, scale)
            cases.append(Case(f"wasserstein-{dist}-{shift}-{scale}", ref, cur, True))
    for seed in range(3):
        for p_cur in (0.3, 0.33, 0.36, 0.42):
            rng = np.random.default_rng([300, seed, int(p_cur * 100)])
            cases.append(Case(f"z-{seed}-{p_cur}", np.where(rng.random(800) < 0.3, "yes", "no"),
                              np.where(rng.random(1500) < p_cur, "yes", "no"), False))
    for seed in range(2):
        for k in (3, 8):
            for mix in (0.0, 0.05, 0.1, 0.3):
                labels = _categorical_sample(400 + seed, k, 600, 1500, mix)
                cases.append(Case(f"chisquare-{seed}-{k}-{mix}", *labels, False))
        for k in (3, 6):
            for mix in (0.0, 0.1, 0.2, 0.4):
                labels = _categorical_sample(500 + seed, k, 4000, 2000, mix)
                cases.append(Case(f"jensenshannon-{seed}-{k}-{mix}", *labels, False))
    for seed in range(4):  # numbers with few values: counted as categories
        rng = np.random.default_rng([600, seed])
        values = np.arange(5.0)
        cases.append(Case(f"chisquare-numbers-{seed}", rng.choice(values, 700),
                          rng.choice(values, 900, p=[0.2, 0.2, 0.2, 0.2 - seed * 0.03,
                                                     0.2 + seed * 0.03]), True))
        cases.append(Case(f"jensenshannon-numbers-{seed}", rng.choice(values, 3000),
                          rng.choice(values, 900, p=[0.2, 0.2, 0.2, 0.2 - seed * 0.05,
                                                     0.2 + seed * 0.05]), True))
    old, new = _categorical_sample(700, 4, 500, 800, 0.0)
    cases.append(Case("chisquare-unseen", old, np.concatenate([new, ["new"]]), False))
    return cases


AGREEMENT_CASES = _agreement_cases()


def test_decisions_agree_with_evidentlys_default_tests_on_raw_data() -> None:
    """Every case away from the threshold (raw p-value outside [0.02, 0.1], raw distance
    outside [0.08, 0.12]) is decided as Evidently decides it on the raw samples, with the
    same test; including the borderline ones, at least 95% are. The cases cover every test
    and both decisions."""
    assert len(AGREEMENT_CASES) >= 80
    disagreements, borderline = [], 0
    seen: set[tuple[str, bool]] = set()
    for case in AGREEMENT_CASES:
        expected = evidently_default(case.ref, case.cur, numeric=case.numeric)
        result = _drift(case.ref, case.cur)
        assert result.test == expected.test, case.name
        seen.add((expected.test, expected.drifted))
        borderline += expected.borderline
        if result.drifted != expected.drifted:
            disagreements.append(case.name)
            assert expected.borderline, (case.name, expected, result)
    assert seen == {(t, d) for t in ("ks", "z", "chisquare", "wasserstein", "jensenshannon")
                    for d in (True, False)}
    assert borderline <= len(AGREEMENT_CASES) // 4  # most cases are clear-cut
    assert 1 - len(disagreements) / len(AGREEMENT_CASES) >= AGREEMENT, disagreements


def test_evidentlys_choice_counts_the_values_of_both_samples() -> None:
    """The raw reference implementation on two edge cases the binned one cannot see
    (see the next test and the report): new live values raise the number of values."""
    one_value = np.array(["US"] * 500)
    three_values = np.array(["US"] * 995 + ["UK"] * 3 + ["FR"] * 2)
    assert evidently_default(one_value, three_values, numeric=False) == RawDecision(
        "chisquare", 0.0, True)
    five = np.arange(600.0) % 5
    seven = np.concatenate([np.arange(1000.0) % 5, [5.0, 6.0]])
    assert evidently_default(five, seven, numeric=True).test == "ks"


def test_several_unseen_values_beside_one_known_value_are_a_chi_square() -> None:
    one_value = np.array(["US"] * 500)
    three_values = np.array(["US"] * 995 + ["UK"] * 3 + ["FR"] * 2)
    result = _drift(one_value, three_values)
    assert (result.test, result.drifted) == ("chisquare", True)


def test_a_high_cardinality_column_does_not_drift_against_itself() -> None:
    ids = np.array([f"u{i:06d}" for i in range(TOP_CATEGORIES + KNOWN_CATEGORIES + 5000)])
    result = _drift(ids, ids)
    assert result.test == "jensenshannon"
    # The 5,000 ids beyond the remembered ones are "unseen" on both sides, alike.
    assert (result.drifted, result.out_of_range) == (False, 5000)
    assert result.statistic is not None and result.statistic < 1e-9


# --- choosing the test, the column edges, the data set ----------------------------------

def _numeric(rows: int) -> ColumnProfile:
    return profile_column("x", np.arange(float(rows)))


def _categories(rows: int, distinct: int) -> ColumnProfile:
    return profile_column("x", np.array([f"v{i % distinct}" for i in range(rows)]))


@pytest.mark.parametrize(("column", "unseen", "test"), [
    (_numeric(SMALL_REFERENCE), False, "ks"),
    (_numeric(SMALL_REFERENCE + 1), False, "wasserstein"),
    (_categories(SMALL_REFERENCE, 1), False, "z"),
    (_categories(SMALL_REFERENCE, 1), True, "chisquare"),
    (_categories(SMALL_REFERENCE, 2), False, "z"),
    (_categories(SMALL_REFERENCE, 2), True, "chisquare"),
    (_categories(SMALL_REFERENCE, 3), False, "chisquare"),
    (_categories(SMALL_REFERENCE + 1, 2), False, "jensenshannon"),
    (_categories(SMALL_REFERENCE + 1, 60), True, "jensenshannon"),
    (profile_column("x", np.arange(900.0) % 5), False, "chisquare"),
    (profile_column("x", np.arange(3000.0) % 5), False, "jensenshannon"),
])
def test_choose_test_follows_evidentlys_defaults(column: ColumnProfile, unseen: bool,
                                                 test: str) -> None:
    assert choose_test(column, unseen=unseen) == test


@pytest.mark.parametrize("ref", [np.arange(800.0), np.arange(5000.0),
                                 np.array(["a", "b", "c"] * 100), np.array(["a", "b"] * 900)])
def test_a_column_without_live_values_has_no_statistic(ref: npt.NDArray[Any]) -> None:
    reference = _profile("x", ref)
    column, live = _live(reference, {"other": [1.0]})  # nothing for "x"
    result = column_drift(column, live)
    assert (result.statistic, result.p_value, result.psi, result.drifted) == (
        None, None, None, False)
    assert (result.rows, result.nulls, result.out_of_range) == (0, 0, 0)
    assert result.test == choose_test(column)
    column, live = _live(reference, {"x": np.array([None, None], dtype=object)})
    only_nulls = column_drift(column, live)
    assert only_nulls.statistic is None and only_nulls.nulls == 2 and only_nulls.rows == 0


def test_a_reference_without_values_has_no_statistic() -> None:
    for categorical in (None, False):
        column, live = _live(_profile("x", np.full(50, np.nan), categorical=categorical),
                             {"x": [1.0, 2.0]})
        result = column_drift(column, live)
        assert result.statistic is None and not result.drifted
        assert result.rows == 2 and result.out_of_range == 2


def test_column_drift_reports_counts_and_serialises() -> None:
    rng = np.random.default_rng(13)
    ref = rng.normal(size=400)
    cur = np.concatenate([rng.normal(2.0, 1.0, 300), [np.nan, np.inf, None]])
    result = _drift(ref, cur)
    assert result.type == "numeric" and result.drifted and result.threshold == P_THRESHOLD
    assert (result.rows, result.nulls) == (300, 3)
    assert result.out_of_range == int(np.sum(cur[:300].astype(float) > ref.max()))
    assert result.psi is not None and result.psi > 0.1
    data = result.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["name"] == "x" and set(data) == {
        "name", "type", "test", "statistic", "p_value", "threshold", "drifted", "psi", "rows",
        "nulls", "out_of_range"}


def _result(drifted: bool, *, rows: int = 10, statistic: float | None = 0.5) -> ColumnDrift:
    return ColumnDrift("c", "numeric", "ks", statistic, 0.01 if drifted else 0.5,
                       P_THRESHOLD, drifted, 0.0, rows, 0, 0)


def test_dataset_drifts_when_at_least_half_of_its_tested_columns_do() -> None:
    assert dataset_drift([]) == (False, 0.0)
    assert dataset_drift([_result(True), _result(False)]) == (True, 0.5)
    drifts, share = dataset_drift([_result(True), _result(False), _result(False)])
    assert not drifts and share == pytest.approx(1 / 3)
    assert dataset_drift([_result(True)] * 3 + [_result(False)]) == (True, 0.75)
    # Columns with no live values are not counted; an infinite chi-square (no statistic
    # to show, but live rows) is.
    untested = _result(False, rows=0, statistic=None)
    assert dataset_drift([_result(True), untested, untested]) == (True, 1.0)
    assert dataset_drift([untested]) == (False, 0.0)
    infinite = _result(True, statistic=None)
    assert dataset_drift([infinite, _result(False), untested]) == (True, 0.5)


def test_dataset_drift_from_real_columns() -> None:
    rng = np.random.default_rng(14)
    ref = {"a": rng.normal(size=600), "b": rng.normal(size=600),
           "c": rng.choice(["x", "y", "z"], 600), "d": rng.normal(size=600)}
    cur = {"a": rng.normal(1.0, 1.0, 500), "b": rng.normal(size=500),
           "c": rng.choice(["x", "y", "z"], 500, p=[0.8, 0.1, 0.1])}
    reference = Reference(rows=600, features=tuple(profile_column(k, v)
                                                   for k, v in ref.items()), prediction=None)
    layout = Layout(reference)
    vector = layout.empty()
    layout.add_rows(vector, cur)
    results = [column_drift(c, layout.column_counts(vector, c)) for c in reference.features]
    assert [r.drifted for r in results] == [True, False, True, False]
    assert results[3].rows == 0
    drifts, share = dataset_drift(results)
    assert drifts and share == pytest.approx(2 / 3)

"""modelhost.stats.sequential: the mSPRT keeps its promise under continuous monitoring, and
the fixed-horizon test watched the same way does not.

Simulations: 2,000 seeded experiments, a look after every 100 rows per arm, looks counted
once both arms have 200 rows (``min_samples``). Measured on the seeds below (the runs are
deterministic); in brackets, the range over three other seeds:

* A/A, binary outcomes at p = 0.3 in both arms, up to 5,000 rows per arm: the mSPRT
  declares a winner in 1.8% of experiments; the two-proportion z-test stopping at the
  first p < 0.05 in 30.8%, six times alpha [1.5% to 2.75% against 28.0% to 30.8%].
* A/A, continuous outcomes (exponential absolute errors, mean 1, skewed as errors are):
  mSPRT 1.4% [1.5% to 2.35%]; Welch's t-test at every look 31.2% [29.5% to 30.9%].
* Power, binary 0.30 against 0.36, at most 2,000 rows per arm: the candidate is found
  in 87.8% of experiments [88.9% to 89.3%], at a median of 1,000 rows per arm; the stable
  arm never.
* Power, continuous errors of mean 1.0 against 0.9 (lower is better), at most 3,000 rows
  per arm: 89.4% [87.2% to 89.6%], median 1,400 rows per arm; the wrong arm never.
* The confidence sequence holds the true difference at every counted look in 98.7%
  (binary power), 98.4% (continuous power) and 98.2% (binary A/A) of experiments
  [97.25% at worst]; 1 - alpha = 95% is required. Discrete looks leave the mSPRT
  conservative: it spends less than its alpha.

Bounds: a type-I rate is asserted below alpha plus three binomial standard errors
(0.05 + 0.0146); power with a margin of several standard errors below the measured rate.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pytest
from scipy import special
from scipy import stats as sps

from modelhost.stats.sequential import (
    STANDARDIZED_TAU,
    ABResult,
    Kind,
    Outcomes,
    ab_decision,
    msprt,
    two_proportion_z,
    welch_t,
)

Floats = npt.NDArray[np.float64]

ALPHA = 0.05
EXPERIMENTS = 2000
STEP = 100  # rows per arm between looks
MAX_N = 5000  # rows per arm in the A/A simulations
MIN_SAMPLES = 200
TYPE_I_BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / EXPERIMENTS)  # 0.0646
NAIVE_FLOOR = 0.20  # the peeking fixed-horizon test errs more often than this (seen: 0.31)
POWER_BINARY = 0.80  # seen: 0.878 (0.30 vs 0.36, <= 2,000 rows per arm)
POWER_CONTINUOUS = 0.80  # seen: 0.894 (errors 1.0 vs 0.9, <= 3,000 rows per arm)
WRONG_ARM = 0.005  # the worse arm declared better (seen: never)
COVERAGE = 1 - ALPHA  # seen: 0.982 to 0.987

AA_BINARY_SEED, AA_CONTINUOUS_SEED, POWER_BINARY_SEED, POWER_CONTINUOUS_SEED = 11, 12, 13, 14


class Many(NamedTuple):
    """Cumulative sums of one arm, shape (experiments, looks): the array form of
    :class:`Outcomes` that :func:`msprt` accepts."""

    n: Floats
    total: Floats
    total_sq: Floats


class Sequential(NamedTuple):
    winner: npt.NDArray[np.int_]  # +1 candidate higher, -1 stable higher, 0 none
    first: npt.NDArray[np.intp]  # index of the deciding look (meaningless without winner)


# --- simulations --------------------------------------------------------------------------

def _rows(looks: int, experiments: int) -> Floats:
    return np.broadcast_to((np.arange(1, looks + 1) * STEP).astype(float),
                           (experiments, looks))


def _binary_arm(rng: np.random.Generator, p: float, max_n: int = MAX_N,
                experiments: int = EXPERIMENTS) -> Many:
    looks = max_n // STEP
    hits = rng.binomial(STEP, p, size=(experiments, looks)).cumsum(axis=1).astype(float)
    return Many(_rows(looks, experiments), hits, hits)  # 0/1: squares are the values


def _exponential_arm(rng: np.random.Generator, mean: float, max_n: int = MAX_N,
                     experiments: int = EXPERIMENTS) -> Many:
    looks = max_n // STEP
    total, total_sq = np.empty((experiments, looks)), np.empty((experiments, looks))
    chunk = 250  # raw rows in slices, to keep memory small
    for start in range(0, experiments, chunk):
        rows = rng.exponential(mean, size=(min(chunk, experiments - start), looks, STEP))
        total[start:start + chunk] = rows.sum(axis=2).cumsum(axis=1)
        total_sq[start:start + chunk] = np.einsum("ijk,ijk->ij", rows, rows).cumsum(axis=1)
    return Many(_rows(looks, experiments), total, total_sq)


def _sequential(stable: Many, candidate: Many, kind: Kind) -> Sequential:
    """What repeated calls of :func:`ab_decision` decide, for every experiment at once:
    the running minimum of the counted looks' p-values, and the lift's sign at the first
    look where it reaches alpha."""
    look = msprt(stable, candidate, kind=kind, alpha=ALPHA)
    counted = (stable.n >= MIN_SAMPLES) & (candidate.n >= MIN_SAMPLES)
    p = np.where(counted, look.p_value, 1.0)
    crossed = np.minimum.accumulate(p, axis=1) <= ALPHA
    first = crossed.argmax(axis=1)
    sign = np.sign(look.lift[np.arange(len(first)), first]).astype(int)
    return Sequential(np.where(crossed.any(axis=1), sign, 0), first)


def _z_p_values(stable: Many, candidate: Many) -> Floats:
    """The two-proportion z-test (pooled standard error), written out independently."""
    p_s, p_c = stable.total / stable.n, candidate.total / candidate.n
    pooled = (stable.total + candidate.total) / (stable.n + candidate.n)
    z = (p_c - p_s) / np.sqrt(pooled * (1 - pooled) * (1 / stable.n + 1 / candidate.n))
    return np.asarray(special.erfc(np.abs(z) / math.sqrt(2)))


def _welch_p_values(stable: Many, candidate: Many) -> Floats:
    def moments(arm: Many) -> tuple[Floats, Floats]:
        mean = arm.total / arm.n
        return mean, (arm.total_sq - arm.total * mean) / (arm.n - 1) / arm.n

    (m_s, a), (m_c, b) = moments(stable), moments(candidate)
    t = (m_c - m_s) / np.sqrt(a + b)
    df = (a + b) ** 2 / (a ** 2 / (stable.n - 1) + b ** 2 / (candidate.n - 1))
    return np.asarray(2 * sps.t.sf(np.abs(t), df))


def _peeking_rate(p_values: Floats, stable: Many) -> float:
    """Share of experiments stopped at the first counted look with p < alpha."""
    return float(((p_values < ALPHA) & (stable.n >= MIN_SAMPLES)).any(axis=1).mean())


@pytest.fixture(scope="module")
def aa_binary() -> tuple[Many, Many]:
    rng = np.random.default_rng(AA_BINARY_SEED)
    return _binary_arm(rng, 0.3), _binary_arm(rng, 0.3)


@pytest.fixture(scope="module")
def aa_continuous() -> tuple[Many, Many]:
    rng = np.random.default_rng(AA_CONTINUOUS_SEED)
    return _exponential_arm(rng, 1.0), _exponential_arm(rng, 1.0)


@pytest.fixture(scope="module")
def power_binary() -> tuple[Many, Many]:
    rng = np.random.default_rng(POWER_BINARY_SEED)
    return _binary_arm(rng, 0.30, max_n=2000), _binary_arm(rng, 0.36, max_n=2000)


@pytest.fixture(scope="module")
def power_continuous() -> tuple[Many, Many]:
    rng = np.random.default_rng(POWER_CONTINUOUS_SEED)
    return _exponential_arm(rng, 1.0, max_n=3000), _exponential_arm(rng, 0.9, max_n=3000)


# --- type I error, power, coverage -------------------------------------------------------

def test_aa_binary_msprt_holds_alpha_and_peeking_z_test_does_not(
        aa_binary: tuple[Many, Many]) -> None:
    stable, candidate = aa_binary
    msprt_rate = float((_sequential(stable, candidate, "binary").winner != 0).mean())
    naive_rate = _peeking_rate(_z_p_values(stable, candidate), stable)
    assert msprt_rate <= TYPE_I_BOUND, msprt_rate  # seen: 0.018
    assert naive_rate > NAIVE_FLOOR, naive_rate  # seen: 0.308, six times alpha


def test_aa_continuous_msprt_holds_alpha_and_peeking_welch_does_not(
        aa_continuous: tuple[Many, Many]) -> None:
    stable, candidate = aa_continuous
    msprt_rate = float((_sequential(stable, candidate, "continuous").winner != 0).mean())
    naive_rate = _peeking_rate(_welch_p_values(stable, candidate), stable)
    assert msprt_rate <= TYPE_I_BOUND, msprt_rate  # seen: 0.014
    assert naive_rate > NAIVE_FLOOR, naive_rate  # seen: 0.312


def test_power_binary(power_binary: tuple[Many, Many]) -> None:
    result = _sequential(*power_binary, "binary")
    found = float((result.winner > 0).mean())
    assert found >= POWER_BINARY, found  # seen: 0.878
    assert float((result.winner < 0).mean()) <= WRONG_ARM


def test_power_continuous_lower_is_better(power_continuous: tuple[Many, Many]) -> None:
    result = _sequential(*power_continuous, "continuous")
    found = float((result.winner < 0).mean())  # lift < 0: the candidate errs less
    assert found >= POWER_CONTINUOUS, found  # seen: 0.894
    assert float((result.winner > 0).mean()) <= WRONG_ARM


@pytest.mark.parametrize(("fixture", "kind", "difference"),
                         [("power_binary", "binary", 0.06),
                          ("power_continuous", "continuous", -0.1),
                          ("aa_binary", "binary", 0.0)])
def test_confidence_sequence_covers_at_every_look(
        fixture: str, kind: Kind, difference: float, request: pytest.FixtureRequest) -> None:
    stable, candidate = request.getfixturevalue(fixture)
    look = msprt(stable, candidate, kind=kind, alpha=ALPHA)
    inside = (look.ci_low <= difference) & (difference <= look.ci_high)
    covered = (inside | (stable.n < MIN_SAMPLES)).all(axis=1)
    assert float(covered.mean()) >= COVERAGE, float(covered.mean())  # seen: >= 0.982


def test_p_value_and_confidence_sequence_agree(power_binary: tuple[Many, Many]) -> None:
    """p <= alpha exactly when the sequence at that look excludes 0: they are one test."""
    look = msprt(*power_binary, kind="binary", alpha=ALPHA)
    excludes_zero = (look.ci_low > 0) | (look.ci_high < 0)
    clear = np.abs(look.p_value - ALPHA) > 1e-9
    assert np.array_equal((look.p_value <= ALPHA)[clear], excludes_zero[clear])


@pytest.mark.parametrize("kind", ["binary", "continuous"])
def test_repeated_ab_decision_matches_the_vectorised_simulation(
        kind: Kind, power_binary: tuple[Many, Many],
        power_continuous: tuple[Many, Many]) -> None:
    arms = power_binary if kind == "binary" else power_continuous
    stable, candidate = (Many(*(a[:25] for a in arm)) for arm in arms)
    expected = _sequential(stable, candidate, kind)
    for i in range(25):
        previous, decision, at = 1.0, "continue", -1
        for j in range(stable.n.shape[1]):
            result = ab_decision(
                Outcomes(int(stable.n[i, j]), stable.total[i, j], stable.total_sq[i, j]),
                Outcomes(int(candidate.n[i, j]), candidate.total[i, j],
                         candidate.total_sq[i, j]),
                kind=kind, alpha=ALPHA, min_samples=MIN_SAMPLES,
                previous_always_valid_p=previous)
            assert result.always_valid_p <= previous
            previous = result.always_valid_p
            if result.decision != "continue":
                decision, at = result.decision, j
                break
        winner = {"continue": 0, "candidate_better": 1, "stable_better": -1}[decision]
        assert winner == expected.winner[i]
        if winner:
            assert at == expected.first[i]


# --- the formulas ---------------------------------------------------------------------------

def test_msprt_matches_the_formula_by_hand() -> None:
    rng = np.random.default_rng(3)
    stable = Outcomes.of(rng.normal(1.0, 2.0, 400))
    candidate = Outcomes.of(rng.normal(1.3, 2.5, 300))
    look = msprt(stable, candidate, kind="continuous", alpha=ALPHA)
    v = stable.variance / 400 + candidate.variance / 300
    tau2 = STANDARDIZED_TAU ** 2 * (stable.variance + candidate.variance) / 2
    theta = candidate.mean - stable.mean
    lam = math.sqrt(v / (v + tau2)) * math.exp(theta ** 2 * tau2 / (2 * v * (v + tau2)))
    half = math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) - 2 * math.log(ALPHA)))
    assert float(look.lift) == pytest.approx(theta, rel=1e-12)
    assert float(look.variance) == pytest.approx(v, rel=1e-12)
    assert float(look.tau) == pytest.approx(math.sqrt(tau2), rel=1e-12)
    assert float(look.p_value) == pytest.approx(min(1.0, 1 / lam), rel=1e-9)
    assert float(look.ci_low) == pytest.approx(theta - half, rel=1e-12)
    assert float(look.ci_high) == pytest.approx(theta + half, rel=1e-12)
    # the bound is where the test of theta = bound has p exactly alpha
    at_bound = math.sqrt(v / (v + tau2)) * math.exp(half ** 2 * tau2 / (2 * v * (v + tau2)))
    assert 1 / at_bound == pytest.approx(ALPHA, rel=1e-9)


def test_binary_msprt_uses_p_times_one_minus_p() -> None:
    stable, candidate = Outcomes(1000, 300.0, 300.0), Outcomes(800, 280.0, 280.0)
    look = msprt(stable, candidate, kind="binary")
    assert float(look.variance) == pytest.approx(0.3 * 0.7 / 1000 + 0.35 * 0.65 / 800)


def test_explicit_tau_is_used_and_default_tau_is_scale_free() -> None:
    rng = np.random.default_rng(5)
    raw_s, raw_c = rng.exponential(1.0, 600), rng.exponential(0.85, 600)
    stable, candidate = Outcomes.of(raw_s), Outcomes.of(raw_c)
    assert float(msprt(stable, candidate, kind="continuous", tau=0.05).tau) == 0.05
    scaled = msprt(Outcomes.of(raw_s * 1000), Outcomes.of(raw_c * 1000), kind="continuous")
    plain = msprt(stable, candidate, kind="continuous")
    assert float(scaled.p_value) == pytest.approx(float(plain.p_value), rel=1e-9)
    assert float(scaled.ci_high) == pytest.approx(1000 * float(plain.ci_high), rel=1e-9)


def test_outcomes_merge_by_addition() -> None:
    rng = np.random.default_rng(8)
    parts = [rng.exponential(2.0, size) for size in (0, 1, 57, 1000, 313)]
    merged = Outcomes()
    for part in parts:
        merged = merged + Outcomes.of(part)
    whole = Outcomes.of(np.concatenate(parts))
    assert merged.n == whole.n == 1371
    assert merged.total == pytest.approx(whole.total, rel=1e-12)
    assert merged.total_sq == pytest.approx(whole.total_sq, rel=1e-12)
    assert merged.mean == pytest.approx(float(np.mean(np.concatenate(parts))), rel=1e-12)
    assert merged.variance == pytest.approx(float(np.var(np.concatenate(parts), ddof=1)),
                                            rel=1e-9)


def test_outcomes_edge_values() -> None:
    assert (Outcomes().mean, Outcomes().variance) == (0.0, 0.0)
    assert Outcomes.of([4.0]).variance == 0.0
    assert Outcomes.of(np.full(1000, 0.1)).variance == 0.0  # rounding is not spread
    with pytest.raises(ValueError, match="finite"):
        Outcomes.of([1.0, float("nan")])


def test_two_proportion_z_matches_the_reference() -> None:
    stable, candidate = Outcomes(1200, 372.0, 372.0), Outcomes(1100, 385.0, 385.0)
    result = two_proportion_z(stable, candidate, alpha=0.1)
    p_s, p_c = 372 / 1200, 385 / 1100
    pooled = (372 + 385) / 2300
    z = (p_c - p_s) / math.sqrt(pooled * (1 - pooled) * (1 / 1200 + 1 / 1100))
    se = math.sqrt(p_s * (1 - p_s) / 1200 + p_c * (1 - p_c) / 1100)
    q = 1.6448536269514722  # the 95th percentile of N(0, 1)
    assert result.method == "two_proportion_z"
    assert result.lift == pytest.approx(p_c - p_s, rel=1e-12)
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(abs(z) / 2 ** 0.5))),
                                           rel=1e-9)
    assert result.ci == pytest.approx((p_c - p_s - q * se, p_c - p_s + q * se), rel=1e-12)
    # the pooled z-test is Pearson's chi-square on the 2x2 table, without Yates' correction
    table = [[372, 1200 - 372], [385, 1100 - 385]]
    chi2 = sps.chi2_contingency(table, correction=False)
    assert result.p_value == pytest.approx(chi2.pvalue, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_welch_t_matches_scipy_on_raw_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw_s = rng.exponential(1.0, 40 + 30 * seed)
    raw_c = rng.normal(1.2, 0.5 + seed, 25 + 50 * seed)
    result = welch_t(Outcomes.of(raw_s), Outcomes.of(raw_c), alpha=0.05)
    reference = sps.ttest_ind(raw_c, raw_s, equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert result.method == "welch_t"
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.ci == pytest.approx((interval.low, interval.high), rel=1e-9)


# --- decisions ----------------------------------------------------------------------------

def _binary(n: int, rate: float) -> Outcomes:
    hits = float(round(n * rate))
    return Outcomes(n, hits, hits)


def _finite(result: ABResult) -> bool:
    numbers = [result.lift, *result.ci, result.p_value, result.always_valid_p,
               result.tau, result.fixed.lift, *result.fixed.ci, result.fixed.p_value,
               result.fixed.statistic]
    return all(math.isfinite(x) for x in numbers)


@pytest.mark.parametrize(("kind", "stable", "candidate"), [
    ("binary", Outcomes(), Outcomes()),
    ("binary", Outcomes(), _binary(1000, 0.4)),
    ("binary", _binary(1000, 1.0), _binary(1000, 1.0)),
    ("binary", _binary(1000, 0.0), _binary(1000, 1.0)),
    ("continuous", Outcomes(), Outcomes()),
    ("continuous", Outcomes.of([2.0]), Outcomes.of([3.0])),
    ("continuous", Outcomes.of(np.full(500, 2.0)), Outcomes.of(np.full(500, 2.0))),
    ("continuous", Outcomes.of(np.full(500, 0.1)), Outcomes.of(np.full(500, 0.2))),
])
def test_degenerate_inputs_continue_with_finite_numbers(
        kind: Kind, stable: Outcomes, candidate: Outcomes) -> None:
    result = ab_decision(stable, candidate, kind=kind, min_samples=0)
    assert result.decision == "continue"
    assert result.always_valid_p == 1.0
    assert _finite(result)
    # the pooled z-test has a spread to divide by when one arm is all 0 and the other
    # all 1 (p = 0, reported only); in every other case here the fixed test has none
    assert result.p_value == (0.0 if stable.total != candidate.total and kind == "binary"
                              and stable.n and candidate.n else 1.0)


def test_min_samples_holds_the_decision() -> None:
    early = ab_decision(_binary(150, 0.2), _binary(150, 0.6), kind="binary", min_samples=200)
    assert early.decision == "continue"
    assert early.always_valid_p == 1.0  # the look did not count
    assert early.p_value < 1e-10  # though the fixed test would have called it
    late = ab_decision(_binary(250, 0.2), _binary(250, 0.6), kind="binary", min_samples=200)
    assert late.decision == "candidate_better"
    assert late.always_valid_p <= ALPHA
    assert late.ci[0] > 0


def test_higher_is_better_false_flips_the_winner() -> None:
    stable, candidate = _binary(2000, 0.30), _binary(2000, 0.40)
    assert ab_decision(stable, candidate, kind="binary").decision == "candidate_better"
    flipped = ab_decision(stable, candidate, kind="binary", higher_is_better=False)
    assert flipped.decision == "stable_better"
    assert ab_decision(candidate, stable, kind="binary").decision == "stable_better"


def test_no_difference_only_when_both_arms_reach_max_samples() -> None:
    def decide(stable: Outcomes, candidate: Outcomes, max_samples: int | None = 3000) -> str:
        return ab_decision(stable, candidate, kind="binary", max_samples=max_samples).decision

    assert decide(_binary(3000, 0.3), _binary(3000, 0.3)) == "no_difference"
    assert decide(_binary(3000, 0.3), _binary(2999, 0.3)) == "continue"
    assert decide(_binary(3000, 0.3), _binary(3000, 0.3), None) == "continue"  # keep going
    assert decide(_binary(3000, 0.3), _binary(3000, 0.4)) == "candidate_better"


def test_the_always_valid_p_is_a_running_minimum() -> None:
    stable, candidate = _binary(1000, 0.30), _binary(1000, 0.31)
    fresh = ab_decision(stable, candidate, kind="binary")
    assert fresh.decision == "continue" and fresh.always_valid_p > 0.5
    carried = ab_decision(stable, candidate, kind="binary", previous_always_valid_p=0.2)
    assert carried.always_valid_p == 0.2
    warming = ab_decision(_binary(100, 0.3), _binary(100, 0.3), kind="binary",
                          previous_always_valid_p=0.01)
    assert (warming.always_valid_p, warming.decision) == (0.01, "continue")


def test_the_fixed_p_value_never_decides() -> None:
    # about 2.2 standard errors apart: fixed p < 0.05, the mSPRT not yet convinced
    result = ab_decision(_binary(2000, 0.30), _binary(2000, 0.334), kind="binary")
    assert result.p_value < ALPHA < result.always_valid_p
    assert result.fixed.ci[0] > 0 > result.ci[0]  # the sequence is the wider interval
    assert result.decision == "continue"


def test_to_dict_is_json_with_exactly_the_documented_keys() -> None:
    result = ab_decision(_binary(2000, 0.30), _binary(2000, 0.40), kind="binary")
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(document) == {"method", "lift", "ci", "p_value", "always_valid_p",
                             "decision", "fixed", "samples"}
    assert document["method"] == "msprt"
    assert document["decision"] == "candidate_better"
    assert document["samples"] == {"stable": 2000, "candidate": 2000}
    assert len(document["ci"]) == 2 and document["ci"][0] < document["lift"]
    assert set(document["fixed"]) == {"method", "lift", "ci", "p_value", "statistic"}
    assert document["fixed"]["method"] == "two_proportion_z"
    named = ab_decision(Outcomes.of([0.5, 1.5, 1.0]), Outcomes.of([1.0, 2.0]),
                        kind="continuous", metric="mae").to_dict()
    assert json.loads(json.dumps(named, allow_nan=False))["metric"] == "mae"
    assert named["fixed"]["method"] == "welch_t"  # type: ignore[index]
    assert list(named)[:2] == ["method", "metric"]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"kind": "ratio"}, "Unknown outcome kind 'ratio'"),
    ({"kind": "binary", "alpha": 0.0}, "alpha must be between 0 and 1"),
    ({"kind": "binary", "tau": 0.0}, "tau must be a positive number"),
    ({"kind": "binary", "previous_always_valid_p": 1.5}, "previous_always_valid_p"),
])
def test_invalid_arguments_say_what_to_do(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ab_decision(_binary(10, 0.5), _binary(10, 0.5), **arguments)  # type: ignore[arg-type]

"""A/B tests between a stable and a candidate model that may be looked at every minute.

A rollout compares two arms on labelled predictions: binary outcomes (1 = correct or
converted) or continuous ones (an absolute error, where lower is better). The counts come
summed from many server processes (:class:`Outcomes` add up), and the controller looks at
them again and again until it can decide. That is the problem this module solves.

**Why peeking breaks the fixed-horizon test.** A z- or t-test promises a false positive
rate of alpha at *one* sample size chosen in advance. Under no difference the z statistic
at successive looks is a random walk in the number of rows; by the law of the iterated
logarithm it leaves any fixed band (+-1.96) eventually with probability one. Stopping at
the first look with p < 0.05 therefore declares a winner far more often than 5% of the
time: about 30% with a look every 100 rows per arm up to 5,000, as measured in
``tests/stats/test_sequential.py``. The fixed-horizon tests (:func:`two_proportion_z`,
:func:`welch_t`) are computed and reported beside the sequential result because people
know them, but they never decide.

**The mixture sequential probability ratio test** (mSPRT) of Johari, Pekelis and Walsh,
"Always Valid Inference: Continuous Monitoring of A/B Tests" (Optimizely, 2015; Operations
Research, 2022), decides instead. With the difference of means theta = mean_candidate -
mean_stable, estimated as ``lift`` with variance V = var_s/n_s + var_c/n_c (p(1-p) for
binary outcomes, the unbiased variance for continuous ones), the likelihood ratio of
"theta drawn from N(0, tau^2)" against "theta = 0" is, for normal data,

    Lambda = sqrt(V / (V + tau^2)) * exp(lift^2 * tau^2 / (2 V (V + tau^2))).

Under no difference Lambda is a nonnegative martingale with mean one, so by Ville's
inequality the chance that it *ever* reaches 1/alpha, at any look and under any stopping
rule, is at most alpha. Hence the always-valid p-value min over looks of min(1, 1/Lambda)
may be watched continuously, and the always-valid confidence sequence (the values theta0
that the same test of theta = theta0 has not rejected),

    lift +- sqrt(V (V + tau^2) / tau^2 * (log((V + tau^2) / V) - 2 log alpha)),

covers the true difference at every look at once with probability at least 1 - alpha.
Looking every 100 rows instead of after every row only makes it more conservative.

Two approximations, as in the paper's implementation: the difference of means is taken as
normal (central limit theorem) and V is the plug-in estimate. Both are poor on a handful
of rows, so looks before both arms have ``min_samples`` rows are not counted (skipping
looks never costs validity). The tests measure the resulting type-I error rates.

**The choice of tau.** The mixture spreads the alternative over effects of about tau, and
the test is most sensitive to effects of that order: much smaller ones drown in noise,
much larger ones pay a needless log(1 + tau^2/V) penalty. Johari et al. recommend fitting
tau to the effects seen in past experiments. Without such history the default is a
*standardized* effect: tau = 0.1 within-arm standard deviations, with the standard
deviation sqrt((var_s + var_c) / 2) read from the data (so the test does not depend on the
outcome's units, and does not grow with the difference it is testing). 0.1 sd is a small
effect (half of Cohen's "small"), the order of a real difference between two versions of a
model. For a given V the confidence sequence is narrowest where tau^2 / V = r with
r = log(1 + r) - 2 log(alpha) (setting its derivative in tau to zero; the same tuning as in
Howard et al., "Time-uniform, nonparametric, nonasymptotic confidence sequences", 2021):
r = 8.2 at alpha = 0.05, so with V = 2 var / n the default is tuned to about 1,640 rows
per arm. A caller who knows the smallest lift worth acting on passes it as ``tau`` in the
outcome's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Kind = Literal["binary", "continuous"]
Decision = Literal["continue", "candidate_better", "stable_better", "no_difference"]

KINDS: tuple[Kind, ...] = ("binary", "continuous")
STANDARDIZED_TAU = 0.1  # default mixing sd, in within-arm standard deviations
_NOISE = 1e-12  # relative size of a sum of squared deviations that is only rounding

_Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Outcomes:
    """The sufficient statistics of one arm's outcomes: count, sum and sum of squares.

    They add up (``a + b`` is the outcomes of both), so each server process keeps its own
    and the totals are summed wherever they meet. The sum of squares loses precision when
    the mean is many orders of magnitude above the spread; errors and 0/1 outcomes are
    far from that."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Outcomes:
        """The outcomes of a sequence of numbers (1/0 for binary ones).

        Raises:
            ValueError: a value is not finite (NaN or infinite).
        """
        array = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(array)):
            raise ValueError("Outcomes must be finite numbers; drop or impute NaN and "
                             "infinite values before counting them.")
        return cls(int(array.size), float(array.sum()), float(np.dot(array, array)))

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(self.n + other.n, self.total + other.total,
                        self.total_sq + other.total_sq)

    @property
    def mean(self) -> float:
        """The mean outcome; 0 when there is none."""
        return self.total / self.n if self.n > 0 else 0.0

    @property
    def variance(self) -> float:
        """The unbiased sample variance; 0 with fewer than two outcomes."""
        if self.n < 2:
            return 0.0
        return float(_squares(np.float64(self.total), np.float64(self.total_sq),
                              np.float64(self.mean))) / (self.n - 1)


class Sums(Protocol):
    """Anything with an arm's count, sum and sum of squares: an :class:`Outcomes`, or
    numpy arrays of them (one per simulated experiment and look) for :func:`msprt`."""

    @property
    def n(self) -> npt.ArrayLike: ...

    @property
    def total(self) -> npt.ArrayLike: ...

    @property
    def total_sq(self) -> npt.ArrayLike: ...


@dataclass(frozen=True, eq=False)
class SequentialLook:
    """The mSPRT at one look (arrays of the inputs' shape; 0-d for single arms).

    ``p_value`` is this look's min(1, 1/Lambda); the always-valid p-value is its running
    minimum over the counted looks. ``ci_low``/``ci_high`` bound the confidence sequence,
    valid at this look whatever happened at the others. ``tau`` is the mixing standard
    deviation used. Degenerate looks (an empty arm, no variance) have p = 1 and an
    interval reduced to ``lift``."""

    lift: _Floats
    variance: _Floats
    tau: _Floats
    p_value: _Floats
    ci_low: _Floats
    ci_high: _Floats


@dataclass(frozen=True)
class FixedResult:
    """A fixed-horizon test of candidate - stable: valid at one pre-planned sample size
    only, so it is reported and never decides."""

    method: str  # "two_proportion_z" | "welch_t"
    lift: float
    ci: tuple[float, float]
    p_value: float
    statistic: float

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "lift": self.lift, "ci": list(self.ci),
                "p_value": self.p_value, "statistic": self.statistic}


@dataclass(frozen=True)
class ABResult:
    """The outcome of one look at an A/B test; see :func:`ab_decision`."""

    lift: float  # mean_candidate - mean_stable
    ci: tuple[float, float]  # always-valid confidence sequence of the lift
    p_value: float  # the fixed-horizon test's, reported only
    always_valid_p: float  # pass back as ``previous_always_valid_p`` at the next look
    decision: Decision
    fixed: FixedResult
    stable_n: int
    candidate_n: int
    tau: float  # the mixing standard deviation used
    metric: str | None = None
    method: str = "msprt"

    def to_dict(self) -> dict[str, object]:
        """The JSON shape; ``metric`` only when one was given."""
        out: dict[str, object] = {"method": self.method}
        if self.metric is not None:
            out["metric"] = self.metric
        out.update({"lift": self.lift, "ci": list(self.ci), "p_value": self.p_value,
                    "always_valid_p": self.always_valid_p, "decision": self.decision,
                    "fixed": self.fixed.to_dict(),
                    "samples": {"stable": self.stable_n, "candidate": self.candidate_n}})
        return out


def msprt(stable: Sums, candidate: Sums, *, kind: Kind, alpha: float = 0.05,
          tau: float | None = None) -> SequentialLook:
    """The mixture sequential probability ratio test at one look, vectorised.

    Args:
        stable: the stable arm's sums (scalars, or arrays for many experiments at once).
        candidate: the candidate arm's sums, of a shape that broadcasts with ``stable``.
        kind: "binary" (variance p(1-p)) or "continuous" (unbiased variance).
        alpha: the confidence sequence covers with probability at least 1 - alpha.
        tau: the mixing standard deviation in the outcome's units (the smallest lift worth
            finding); None: ``STANDARDIZED_TAU`` within-arm standard deviations.

    Returns:
        A :class:`SequentialLook` of float arrays.

    Raises:
        ValueError: an unknown kind, alpha outside (0, 1), or tau not positive.
    """
    _check(kind, alpha)
    if tau is not None and not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive number (the smallest lift worth "
                         f"finding, in the outcome's units), not {tau!r}.")
    mean_s, var_s, n_s = _moments(stable, kind)
    mean_c, var_c, n_c = _moments(candidate, kind)
    both = (n_s > 0) & (n_c > 0)
    lift = np.where(both, mean_c - mean_s, 0.0)
    variance = np.where(both, var_s / np.maximum(n_s, 1.0) + var_c / np.maximum(n_c, 1.0),
                        0.0)
    if tau is None:
        tau2 = STANDARDIZED_TAU ** 2 * (var_s + var_c) / 2.0
    else:
        tau2 = np.full(np.broadcast(var_s, var_c).shape, tau ** 2)
    tau2 = np.broadcast_to(tau2, lift.shape)
    ok = (variance > 0) & (tau2 > 0)
    v = np.where(ok, variance, 1.0)  # placeholders where degenerate: no division by zero
    t2 = np.where(ok, tau2, 1.0)
    log_lambda = 0.5 * np.log(v / (v + t2)) + lift ** 2 * t2 / (2.0 * v * (v + t2))
    p_value = np.where(ok, np.exp(-np.maximum(log_lambda, 0.0)), 1.0)
    half = np.sqrt(v * (v + t2) / t2 * (np.log((v + t2) / v) - 2.0 * math.log(alpha)))
    half = np.where(ok, half, 0.0)
    return SequentialLook(lift=lift, variance=variance, tau=np.sqrt(tau2),
                          p_value=p_value, ci_low=lift - half, ci_high=lift + half)


def two_proportion_z(stable: Outcomes, candidate: Outcomes, *,
                     alpha: float = 0.05) -> FixedResult:
    """Two-proportion z-test of candidate - stable for binary outcomes: the p-value
    (two-sided) from the pooled standard error, as under the null both arms share one
    rate; the (1 - alpha) Wald interval from the unpooled one, as the interval is about
    the rates as they are. No spread (both rates 0 or both 1, or an empty arm): p = 1."""
    _check("binary", alpha)
    if stable.n == 0 or candidate.n == 0:
        return FixedResult("two_proportion_z", 0.0, (0.0, 0.0), 1.0, 0.0)
    p_s, p_c = stable.mean, candidate.mean
    lift = p_c - p_s
    pooled = (stable.total + candidate.total) / (stable.n + candidate.n)
    se_pooled = math.sqrt(max(pooled * (1.0 - pooled), 0.0)
                          * (1.0 / stable.n + 1.0 / candidate.n))
    z = lift / se_pooled if se_pooled > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2.0)) if se_pooled > 0 else 1.0
    se = math.sqrt(max(p_s * (1.0 - p_s), 0.0) / stable.n
                   + max(p_c * (1.0 - p_c), 0.0) / candidate.n)
    q = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    return FixedResult("two_proportion_z", lift, (lift - q * se, lift + q * se), p_value, z)


def welch_t(stable: Outcomes, candidate: Outcomes, *, alpha: float = 0.05) -> FixedResult:
    """Welch's t-test of candidate - stable for continuous outcomes (unequal variances,
    Welch-Satterthwaite degrees of freedom): the two-sided p-value and the (1 - alpha)
    interval, as ``scipy.stats.ttest_ind(candidate, stable, equal_var=False)``. Fewer than
    two outcomes in an arm, or no spread in either: p = 1 (scipy returns NaN)."""
    _check("continuous", alpha)
    lift = candidate.mean - stable.mean if stable.n and candidate.n else 0.0
    a = stable.variance / stable.n if stable.n else 0.0
    b = candidate.variance / candidate.n if candidate.n else 0.0
    if stable.n < 2 or candidate.n < 2 or a + b <= 0:
        return FixedResult("welch_t", lift, (lift, lift), 1.0, 0.0)
    se = math.sqrt(a + b)
    t = lift / se
    df = (a + b) ** 2 / (a ** 2 / (stable.n - 1) + b ** 2 / (candidate.n - 1))
    from scipy import stats as sps  # on first use: a server worker imports this module

    p_value = float(min(2.0 * sps.t.sf(abs(t), df), 1.0))
    q = float(sps.t.ppf(1.0 - alpha / 2.0, df))
    return FixedResult("welch_t", lift, (lift - q * se, lift + q * se), p_value, t)


def ab_decision(
    stable: Outcomes,
    candidate: Outcomes,
    *,
    kind: Kind,
    alpha: float = 0.05,
    min_samples: int = 200,
    higher_is_better: bool = True,
    previous_always_valid_p: float = 1.0,
    max_samples: int | None = None,
    tau: float | None = None,
    metric: str | None = None,
) -> ABResult:
    """One look at an A/B test: the mSPRT decides, the fixed-horizon test is reported.

    Rules, in order:

    * "continue" until both arms have ``min_samples`` outcomes; such looks do not count
      towards the always-valid p-value either (it is returned unchanged);
    * a winner once the always-valid p-value is at most ``alpha``: "candidate_better"
      when the lift points the better way (up if ``higher_is_better``), else
      "stable_better". A winner is final: stop the test and act on it;
    * "no_difference" when both arms have reached ``max_samples`` (if given) without one;
    * otherwise "continue". Degenerate data (an empty arm, no spread) give p = 1.

    Args:
        stable: the stable arm's outcomes, summed over every process.
        candidate: the candidate arm's outcomes.
        kind: "binary" (two-proportion z-test beside) or "continuous" (Welch's t-test).
        alpha: the type-I error rate over the whole test, however often it is looked at.
        min_samples: rows per arm before a look counts.
        higher_is_better: False for errors and latencies.
        previous_always_valid_p: the ``always_valid_p`` of the previous look (1 at the
            first), so the p-value is the running minimum over the looks.
        max_samples: rows per arm after which, without a winner, there is no difference
            worth finding; None: continue for ever.
        tau: the mixing standard deviation, see :func:`msprt`.
        metric: the name of the metric compared, carried into :meth:`ABResult.to_dict`.

    Raises:
        ValueError: an unknown kind, alpha outside (0, 1), a p-value outside [0, 1], or
            tau not positive.
    """
    _check(kind, alpha)
    if not 0.0 <= previous_always_valid_p <= 1.0:
        raise ValueError(f"previous_always_valid_p must be in [0, 1], not "
                         f"{previous_always_valid_p!r}; pass 1.0 at the first look.")
    look = msprt(stable, candidate, kind=kind, alpha=alpha, tau=tau)
    fixed = (two_proportion_z(stable, candidate, alpha=alpha) if kind == "binary"
             else welch_t(stable, candidate, alpha=alpha))
    lift = float(look.lift)
    counted = stable.n >= min_samples and candidate.n >= min_samples
    always_valid_p = (min(previous_always_valid_p, float(look.p_value)) if counted
                      else previous_always_valid_p)
    decision: Decision = "continue"
    if counted and always_valid_p <= alpha and lift != 0.0:
        decision = "candidate_better" if (lift > 0) == higher_is_better else "stable_better"
    elif (counted and max_samples is not None
          and stable.n >= max_samples and candidate.n >= max_samples):
        decision = "no_difference"
    return ABResult(lift=lift, ci=(float(look.ci_low), float(look.ci_high)),
                    p_value=fixed.p_value, always_valid_p=always_valid_p,
                    decision=decision, fixed=fixed, stable_n=stable.n,
                    candidate_n=candidate.n, tau=float(look.tau), metric=metric)


def _moments(sums: Sums, kind: Kind) -> tuple[_Floats, _Floats, _Floats]:
    """Mean, variance (p(1-p) for binary, unbiased for continuous) and count, as arrays;
    mean 0 for an empty arm, variance 0 with too few rows to have one."""
    n = np.asarray(sums.n, dtype=np.float64)
    total = np.asarray(sums.total, dtype=np.float64)
    mean = total / np.maximum(n, 1.0)
    if kind == "binary":
        variance = np.clip(mean * (1.0 - mean), 0.0, None)
    else:
        total_sq = np.asarray(sums.total_sq, dtype=np.float64)
        squares = _squares(total, total_sq, mean)
        variance = np.where(n >= 2, squares / np.maximum(n - 1.0, 1.0), 0.0)
    return mean, variance, n


def _squares(total: _Floats | np.float64, total_sq: _Floats | np.float64,
             mean: _Floats | np.float64) -> _Floats:
    """The sum of squared deviations, total_sq - total * mean, with float noise set to 0:
    outcomes that are all equal (say 0.1) leave a residue near 1e-17 that would otherwise
    read as a real, tiny spread and make any difference of means look certain. A spread
    below a millionth of the root mean square is taken as none."""
    squares = np.asarray(total_sq - total * mean, dtype=np.float64)
    return np.where(squares > _NOISE * np.abs(total_sq), squares, 0.0)


def _check(kind: str, alpha: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown outcome kind {kind!r}. Use one of: {', '.join(KINDS)}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), not {alpha!r}.")

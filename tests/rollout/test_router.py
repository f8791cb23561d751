"""The pure router: validation, stickiness across processes, splits, monotone canaries,
independent shadow sampling. Pure unit tests; the statistical ones use fixed keys or a
seeded generator, so they are deterministic."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import subprocess
import sys

import pytest

from modelhost.rollout import (
    Arm,
    ArmRole,
    Routing,
    Shadow,
    WindowedDraw,
    bucket,
    choose,
    shadowed,
)
from modelhost.rollout.router import _unit

N = 20_000
KEYS = [f"user-{i}" for i in range(N)]
STABLE, CANDIDATE = ArmRole.STABLE, ArmRole.CANDIDATE


def split(candidate: float, *, model: str = "churn", shadow: Shadow | None = None) -> Routing:
    """A stable 1.2.0 / candidate 1.3.0 routing with the candidate at ``candidate``."""
    return Routing(model, (Arm("1.2.0", 1 - candidate), Arm("1.3.0", candidate, CANDIDATE)),
                   shadow)


def within_4_sd(hits: int, n: int, p: float) -> bool:
    return abs(hits - n * p) <= 4 * math.sqrt(n * p * (1 - p))


def no_draw() -> float:
    raise AssertionError("draw() must not be called here")


# --- validation and shape ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arms", "shadow", "message"),
    [
        ((), None, "no arms"),
        ((Arm("1", 0.0),), None, "weight 0.0"),
        ((Arm("1", -0.5), Arm("2", 1.5, CANDIDATE)), None, "weight -0.5"),
        ((Arm("1", math.nan),), None, "weight nan"),
        ((Arm("1", math.inf),), None, "weight inf"),
        ((Arm("1", 0.9),), None, "add up to 0.9"),
        ((Arm("1", 0.5), Arm("2", 0.6, CANDIDATE)), None, "add up to"),
        ((Arm("1", 0.5), Arm("1", 0.5, CANDIDATE)), None, "repeats a version"),
        ((Arm("1", 0.5), Arm("2", 0.5)), None, "repeats a role"),
        ((Arm("1", 0.5, CANDIDATE), Arm("2", 0.5, CANDIDATE)), None, "repeats a role"),
        ((Arm("1", 1.0),), Shadow("2", 0.0), "fraction"),
        ((Arm("1", 1.0),), Shadow("2", 1.5), "fraction"),
        ((Arm("1", 1.0),), Shadow("2", math.nan), "fraction"),
        ((Arm("1", 0.5), Arm("2", 0.5, CANDIDATE)), Shadow("2", 0.1), "also an arm"),
    ],
)
def test_routing_rejects_invalid_splits(arms: tuple[Arm, ...], shadow: Shadow | None,
                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Routing("churn", arms, shadow)


def test_weights_may_miss_1_by_rounding_only() -> None:
    Routing("churn", (Arm("1", 0.1 + 0.2), Arm("2", 0.7, CANDIDATE)))  # 1.0000000000000002
    with pytest.raises(ValueError, match="add up to"):
        Routing("churn", (Arm("1", 0.3 + 1e-8), Arm("2", 0.7, CANDIDATE)))


def test_arms_are_kept_stable_first_whatever_the_given_order() -> None:
    given = Routing("churn", (Arm("1.3.0", 0.3, CANDIDATE), Arm("1.2.0", 0.7)))
    assert [arm.role for arm in given.arms] == [STABLE, CANDIDATE]
    assert given == split(0.3)
    assert list(given.weights()) == ["1.2.0", "1.3.0"]
    assert [choose(given, key) for key in KEYS[:500]] == [
        choose(split(0.3), key) for key in KEYS[:500]]


def test_versions_and_weights_have_the_deployment_shape() -> None:
    routing = split(0.05, shadow=Shadow("1.4.0", 0.1))
    assert routing.versions == frozenset({"1.2.0", "1.3.0", "1.4.0"})
    assert routing.weights() == pytest.approx({"1.2.0": 0.95, "1.3.0": 0.05})
    assert math.fsum(routing.weights().values()) == pytest.approx(1.0)


def test_arm_role_is_its_string_value() -> None:
    assert ArmRole("candidate") is CANDIDATE
    assert STABLE == "stable" and str(STABLE) == "stable" and f"{CANDIDATE}" == "candidate"


# --- single arm: the hot path -------------------------------------------------------------


def test_single_routing_returns_its_one_arm_without_hashing_or_drawing() -> None:
    routing = Routing.single("churn", "1.2.0")
    assert routing.arms == (Arm("1.2.0", 1.0, STABLE),)
    assert routing.weights() == {"1.2.0": 1.0} and routing.versions == {"1.2.0"}
    assert routing.shadow is None
    for key in (*KEYS[:100], "", None):
        assert choose(routing, key, draw=no_draw) is routing.arms[0]
        assert shadowed(routing, key, draw=no_draw) is False


# --- buckets --------------------------------------------------------------------------------


def test_bucket_is_sha256_of_salt_nul_key_first_8_bytes_big_endian() -> None:
    digest = hashlib.sha256(b"churn\x00user-1").digest()
    expected = int.from_bytes(digest[:8], "big") / 2**64
    assert bucket("user-1", "churn") == expected
    assert 0.0 <= bucket("user-1", "churn") < 1.0
    assert bucket("user-1", "fraud") != expected  # the salt separates models


def test_bucket_stays_below_1_for_the_largest_64_bit_values() -> None:
    # (2**64 - 1) / 2**64 rounds to 1.0 as a float; a point of [0, 1) must not.
    assert _unit(2**64 - 1) < 1.0 and _unit(0) == 0.0


# --- stickiness --------------------------------------------------------------------------


def test_the_same_key_gets_the_same_arm_every_time() -> None:
    routing = split(0.5)
    for key in ("user-1", "user-2", "user-3"):
        first = choose(routing, key, draw=no_draw)
        assert all(choose(routing, key, draw=no_draw) == first for _ in range(1000))


_ARMS_IN_A_FRESH_PROCESS = (
    "import json\n"
    "from modelhost.rollout import Arm, ArmRole, Routing, choose\n"
    "r = Routing('churn', (Arm('1.2.0', 0.5), Arm('1.3.0', 0.5, ArmRole.CANDIDATE)))\n"
    "keys = [f'user-{i}' for i in range(200)]\n"
    "print(json.dumps({'ours': [choose(r, k).version for k in keys],\n"
    "                  'naive': [hash(k) % 100 for k in keys]}))\n"
)


def _in_fresh_process(hash_seed: str) -> dict[str, list[str] | list[int]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run([sys.executable, "-c", _ARMS_IN_A_FRESH_PROCESS],
                            capture_output=True, text=True, check=True, timeout=60, env=env)
    out: dict[str, list[str] | list[int]] = json.loads(result.stdout)
    return out


def test_arms_do_not_depend_on_the_process_where_naive_hash_does() -> None:
    one, two = _in_fresh_process("1"), _in_fresh_process("2")
    # Ours: two workers (or a restart) agree on every key, and with this process too.
    assert one["ours"] == two["ours"]
    assert one["ours"] == [choose(split(0.5), f"user-{i}").version for i in range(200)]
    assert set(one["ours"]) == {"1.2.0", "1.3.0"}
    # Naive: hash() is salted per process, so `hash(key) % 100` moves most keys.
    moved = sum(a != b for a, b in zip(one["naive"], two["naive"], strict=True))
    assert moved > 150


# --- splits --------------------------------------------------------------------------------


@pytest.mark.parametrize("candidate", [0.05, 0.5])
def test_keys_split_by_the_weights(candidate: float) -> None:
    routing = split(candidate)
    hits = sum(choose(routing, key, draw=no_draw).role is CANDIDATE for key in KEYS)
    assert within_4_sd(hits, N, candidate), hits


@pytest.mark.parametrize("candidate", [0.05, 0.5])
def test_requests_without_key_split_by_the_weights(candidate: float) -> None:
    routing, draw = split(candidate), random.Random(20240517).random
    hits = sum(choose(routing, None, draw=draw).role is CANDIDATE for _ in range(N))
    assert within_4_sd(hits, N, candidate), hits


def test_draw_walks_the_cumulative_weights_stable_first() -> None:
    routing = split(0.25)  # stable [0, 0.75), candidate [0.75, 1)
    assert choose(routing, None, draw=lambda: 0.0).role is STABLE
    assert choose(routing, None, draw=lambda: 0.7499).role is STABLE
    assert choose(routing, None, draw=lambda: 0.75).role is CANDIDATE
    assert choose(routing, None, draw=lambda: 0.9999).role is CANDIDATE


def test_raising_the_candidate_weight_never_moves_a_candidate_key_back() -> None:
    steps = [0.05, 0.25, 0.5, 0.75, 0.95]
    on_candidate = [
        {key for key in KEYS if choose(split(step), key).role is CANDIDATE} for step in steps
    ]
    for lower, higher in itertools.pairwise(on_candidate):
        assert lower <= higher
    for step, keys in zip(steps, on_candidate, strict=True):
        assert within_4_sd(len(keys), N, step), (step, len(keys))


# --- shadow --------------------------------------------------------------------------------


def test_shadow_samples_its_fraction_of_keys() -> None:
    routing = split(0.5, shadow=Shadow("1.4.0", 0.1))
    hits = sum(shadowed(routing, key, draw=no_draw) for key in KEYS)
    assert within_4_sd(hits, N, 0.1), hits


def test_shadow_is_sticky_per_key() -> None:
    routing = split(0.5, shadow=Shadow("1.4.0", 0.1))
    for key in KEYS[:50]:
        first = shadowed(routing, key)
        assert all(shadowed(routing, key) is first for _ in range(100))


def test_shadow_sampling_is_independent_of_the_arm() -> None:
    routing = split(0.5, shadow=Shadow("1.4.0", 0.1))
    for role in (STABLE, CANDIDATE):
        keys = [key for key in KEYS if choose(routing, key).role is role]
        hits = sum(shadowed(routing, key) for key in keys)
        assert within_4_sd(hits, len(keys), 0.1), (role, hits, len(keys))


def test_shadow_without_key_draws_and_full_fraction_takes_all() -> None:
    routing = split(0.5, shadow=Shadow("1.4.0", 0.1))
    draw = random.Random(7).random
    assert within_4_sd(sum(shadowed(routing, None, draw=draw) for _ in range(N)), N, 0.1)
    everything = split(0.5, shadow=Shadow("1.4.0", 1.0))
    assert all(shadowed(everything, key) for key in KEYS[:1000])


def test_no_shadow_is_never_shadowed_and_never_draws() -> None:
    assert not any(shadowed(split(0.5), key, draw=no_draw) for key in (*KEYS[:100], None))


# --- windows -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_windowed_draw_holds_its_point_for_the_window_then_draws_anew() -> None:
    clock, points = FakeClock(), iter([0.25, 0.75, 0.5])
    draw = WindowedDraw(0.002, clock=clock, draw=lambda: next(points))
    assert [draw(), draw()] == [0.25, 0.25]
    clock.now += 0.0019
    assert draw() == 0.25
    clock.now += 0.0001  # the window is over: a new draw
    assert [draw(), draw()] == [0.75, 0.75]
    clock.now += 60.0  # after an idle minute, one draw, not one per missed window
    assert draw() == 0.5


@pytest.mark.parametrize("window", [0.0, -0.001, math.nan, math.inf])
def test_a_windowed_draw_needs_a_finite_positive_window(window: float) -> None:
    with pytest.raises(ValueError, match="window_s must be finite and > 0"):
        WindowedDraw(window)


@pytest.mark.parametrize("window", [-0.001, math.nan, math.inf])
def test_routing_rejects_a_window_out_of_range(window: float) -> None:
    with pytest.raises(ValueError, match="window"):
        Routing("churn", (Arm("1", 0.5), Arm("2", 0.5, CANDIDATE)), window_s=window)


def test_a_routing_with_a_window_draws_per_window_by_default() -> None:
    windowed = Routing("churn", split(0.1).arms, window_s=0.002)
    assert isinstance(windowed.draw, WindowedDraw)
    assert windowed != split(0.1)  # the window is part of what the routing is
    assert split(0.1).draw is random.random  # no window: one draw per request
    one = Routing("churn", (Arm("1", 1.0),), window_s=0.002)  # one arm: nothing to draw
    assert one.draw is random.random and choose(one, None) is one.arms[0]
    assert choose(windowed, None, draw=lambda: 0.95).role is CANDIDATE  # a given draw wins


@pytest.mark.parametrize("candidate", [0.05, 0.1, 0.5])
def test_requests_without_key_split_by_the_weights_when_drawn_per_window(
        candidate: float) -> None:
    """200,000 requests arriving at random (20 per 2 ms window on average): the shares
    follow the weights to within 1.5 points, while the arm changes only between windows,
    not between most neighbouring requests as one draw per request does."""
    rng, clock = random.Random(20261206), FakeClock()
    routing, draw = split(candidate), WindowedDraw(0.002, clock=clock, draw=rng.random)
    roles = []
    for _ in range(200_000):
        clock.now += rng.expovariate(1 / 0.0001)  # 10,000 requests per second
        roles.append(choose(routing, None, draw=draw).role)
    share = roles.count(CANDIDATE) / len(roles)
    assert abs(share - candidate) <= 0.015, share
    switches = sum(a is not b for a, b in itertools.pairwise(roles))
    per_request = [choose(split(candidate), None, draw=rng.random).role
                   for _ in range(200_000)]
    assert switches * 10 < sum(a is not b for a, b in itertools.pairwise(per_request))


def test_keys_keep_their_arm_whatever_the_window() -> None:
    windowed = Routing("churn", split(0.3).arms, window_s=0.002)
    assert [choose(windowed, key).version for key in KEYS[:2000]] == [
        choose(split(0.3), key).version for key in KEYS[:2000]]

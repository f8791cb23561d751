"""modelhost.serving.table: the routing table built from a routing state, pure values."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from modelhost.entities import RoutedModel, RoutingState
from modelhost.rollout import Arm, ArmRole, Routing, Shadow
from modelhost.serving.table import EMPTY_TABLE, ModelEntry, RoutingTable

STATE = RoutingState(revision=7, models=(
    RoutedModel("iris", "1.0.0", {"champion": "1.0.0"}, {"serving.cache": "TRUE"}),
    RoutedModel("other", None, {}, {}),
    RoutedModel("wine", "2.1.0", {}, {"serving.cache": "no"}),
))


def test_from_state_gives_each_production_version_one_arm() -> None:
    table = RoutingTable.from_state(STATE)
    assert table.revision == 7
    assert list(table.models) == ["iris", "other", "wine"]
    assert table.models["iris"] == ModelEntry(Routing.single("iris", "1.0.0"),
                                              {"champion": "1.0.0"}, cached=True)
    assert table.routing("iris") == Routing("iris", (Arm("1.0.0", 1.0, ArmRole.STABLE),))
    assert table.models["other"].routing is None and table.routing("other") is None
    assert table.models["wine"].cached is False
    assert table.routing("unknown") is None
    assert table.wanted() == {("iris", "1.0.0"), ("wine", "2.1.0")}


def test_from_state_with_only_keeps_that_model() -> None:
    table = RoutingTable.from_state(STATE, only="wine")
    assert list(table.models) == ["wine"]
    assert table.wanted() == {("wine", "2.1.0")}
    assert RoutingTable.from_state(STATE, only="nope").models == {}


def test_the_table_is_read_only() -> None:
    table = RoutingTable.from_state(STATE)
    with pytest.raises(TypeError):
        table.models["x"] = table.models["iris"]  # type: ignore[index]
    with pytest.raises(TypeError):
        table.models["iris"].aliases["x"] = "1.0.0"  # type: ignore[index]


def test_wanted_names_every_arm_and_the_shadow() -> None:
    routing = Routing("iris", (Arm("1.1.0", 0.1, ArmRole.CANDIDATE), Arm("1.0.0", 0.9)),
                      Shadow("1.2.0", 0.5))
    table = RoutingTable(revision=1, models=MappingProxyType({
        "iris": ModelEntry(routing, MappingProxyType({}))}))
    assert table.wanted() == {("iris", "1.0.0"), ("iris", "1.1.0"), ("iris", "1.2.0")}
    assert [arm.version for arm in routing.arms] == ["1.0.0", "1.1.0"]  # stable first


def test_the_empty_table() -> None:
    assert EMPTY_TABLE.revision is None
    assert EMPTY_TABLE.models == {} and EMPTY_TABLE.wanted() == frozenset()


def test_a_canary_draws_its_arms_per_window_and_an_ab_test_per_request() -> None:
    """A canary's requests without a key share one draw per window (so those that would
    share a model call go to one version); an A/B test's statistics need one per request."""
    from modelhost.entities import Deployment, RolloutState, Strategy
    from modelhost.rollout import WindowedDraw
    from modelhost.serving.table import CANARY_WINDOW_S, routing_of

    def deployment(strategy: Strategy) -> Deployment:
        return Deployment(model="iris", state=RolloutState.PROGRESSING, strategy=strategy,
                          rollout_id="r1", stable="1.0.0", candidate="1.1.0",
                          candidate_weight=0.1)

    canary = routing_of("iris", "1.0.0", deployment(Strategy.CANARY))
    assert canary.window_s == CANARY_WINDOW_S > 0
    assert isinstance(canary.draw, WindowedDraw)
    ab = routing_of("iris", "1.0.0", deployment(Strategy.AB))
    assert ab.window_s == 0.0 and not isinstance(ab.draw, WindowedDraw)
    assert canary.weights() == ab.weights() == {"1.0.0": 0.9, "1.1.0": 0.1}

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

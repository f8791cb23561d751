"""The console's pure parts: the charts it draws and the comparisons it makes."""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest

from modelhost.entities import Deployment, Model, RolloutState, Strategy
from modelhost.serving.console import charts, views


def test_nice_steps_are_1_2_2_5_or_5_times_a_power_of_ten() -> None:
    assert [charts.nice_step(x) for x in (0.32, 0.1, 1.75, 7 / 6, 40, 260)] == [
        0.5, 0.1, 2.0, 2.0, 50.0, 500.0]
    assert charts.nice_step(0) == 1.0 and charts.nice_step(math.nan) == 1.0


def test_the_split_bar_gives_each_version_its_share_and_escapes_names() -> None:
    svg = charts.split_bar([("1.0.0", 0.75), ('<b>"x', 0.25)])
    assert re.findall(r'<rect x="[0-9.]+%" width="([0-9.]+)%"', svg) == ["75.000", "25.000"]
    assert re.findall(r'x="([0-9.]+)%" width', svg) == ["0.000", "75.000"]
    assert "<b>" not in svg and "&lt;b&gt;&quot;x" in svg
    assert "<title>1.0.0: 75.0% of traffic</title>" in svg
    assert 'aria-label="no traffic"' in charts.split_bar([])


def test_lines_mark_every_finite_point_with_its_numbers() -> None:
    svg = charts.lines([("a<", [(0, 1.0), (1, 0.5), (2, math.nan)]), ("b", [(0, 2.0)])],
                       title="loss")
    assert svg.count("<circle") == 3  # the NaN is left out
    assert "<title>a&lt; step 1: 0.5</title>" in svg
    assert svg.count("<polyline") == 1  # one point draws no line
    assert "no values" in charts.lines([("a", [(0, math.inf)])], title="x")


def _model(production: str | None) -> Model:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return Model(name="m", description="", tags={}, aliases={}, latest_version="1.1.0",
                 production_version=production, created_at=now, updated_at=now)


def test_the_traffic_split_is_the_deployment_weights_else_production_alone() -> None:
    canary = Deployment(model="m", state=RolloutState.PROGRESSING, strategy=Strategy.CANARY,
                        stable="1.0.0", candidate="1.1.0", candidate_weight=0.25)
    assert views.traffic_split(canary, _model("1.0.0")) == (("1.0.0", 0.75), ("1.1.0", 0.25))
    assert views.traffic_split(None, _model("1.0.0")) == (("1.0.0", 1.0),)
    assert views.traffic_split(None, _model(None)) == ()


@pytest.mark.parametrize(("a", "b", "changed"), [
    ({"x": "double"}, {"x": "double"}, []),
    ({"x": "double"}, {"x": "long"}, ["x"]),
    ({"x": "double"}, {"x": "double", "y": "string"}, ["y"]),
])
def test_version_comparison_flags_changed_columns(a: dict[str, str], b: dict[str, str],
                                                  changed: list[str]) -> None:
    def spec(columns: dict[str, str]) -> list[dict[str, object]]:
        return [{"kind": "column", "name": n, "type": t, "required": True} for n, t in
                columns.items()]

    differences = views._columns(spec(a), spec(b))
    assert [d.name for d in differences if d.changed] == changed
    missing = [d for d in differences if d.name == "y"]
    assert not missing or missing[0].a == "—"

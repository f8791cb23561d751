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


def _live(analysis: dict[str, object]) -> str:
    """The deployment's live part rendered with ``analysis`` (what the controller says)."""
    from modelhost.serving.console.pages import PREFIX, Viewer, _environment

    d = Deployment(model="m", state=RolloutState.PROGRESSING, strategy=Strategy.AB,
                   stable="1.0.0", candidate="1.1.0", candidate_weight=0.5)
    return _environment().get_template("deployment_live.html").render(
        viewer=Viewer(None, "t"), path="/ui/deployments/m", prefix=PREFIX, name="m", d=d,
        events=[], analysis=analysis, traffic=views.traffic_split(d),
        split=charts.split_bar, actions=())


ARMS = [{"role": "stable", "version": "1.0.0", "requests": 500, "errors": 0,
         "error_rate": 0.0, "p50_ms": 1.0, "p99_ms": 3.0, "labelled": 400,
         "metric": {"name": "accuracy", "value": 0.9}},
        {"role": "candidate", "version": "1.1.0", "requests": 500, "errors": 1,
         "error_rate": 0.002, "p50_ms": 1.1, "p99_ms": 3.5, "labelled": 410,
         "metric": {"name": "accuracy", "value": 0.95}}]


def test_an_ab_test_shows_its_lift_interval_and_decision() -> None:
    ab = {"method": "msprt", "metric": "accuracy", "lift": 0.05, "ci": [0.012, 0.088],
          "p_value": 0.001, "always_valid_p": 0.004, "decision": "candidate_better",
          "samples": {"stable": 400, "candidate": 410}}
    html = _live({"arms": ARMS, "verdict": None, "ab": ab, "shadow": None})
    assert "A/B: candidate_better" in html and "lift (candidate − stable) +0.0500" in html
    assert "[0.0120, 0.0880]" in html and "labelled rows 400 / 410" in html
    waiting = _live({"arms": ARMS, "verdict": None, "shadow": None,
                     "ab": {**ab, "samples": {"stable": 0, "candidate": 0}}})
    assert "no labelled rows yet on either arm" in waiting and "+0.0500" not in waiting


def test_a_shadow_shows_its_agreement_in_words() -> None:
    shadow = {"version": "1.1.0", "fraction": 0.1, "requests": 30, "rows_compared": 150,
              "agreement_rate": 0.98, "errors": 0}
    html = _live({"arms": ARMS, "verdict": None, "ab": None, "shadow": shadow})
    assert "gets a copy of 10% of the requests" in html
    assert "<th>agreement rate</th><td class=\"n\">98.0%</td>" in html
    assert "rows compared" in html and "{" not in html.split('id="shadow"')[1][:400]

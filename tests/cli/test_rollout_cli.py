"""``modelhost deploy``, ``modelhost rollout status|events|promote|abort|step|pause|resume``
and ``modelhost rollback`` on the local database: the status table and its events, the
JSON of §3.7, a canary from its first step to its promotion and a rollback that restores
the stages, each flag passed as the option of its name (and only the flags given), and
refusals with their exit codes and one §3.6 line that change nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import with_iris

from modelhost import Client
from modelhost.cli import run
from modelhost.entities import Strategy
from modelhost.rollout.options import DEFAULTS

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


@pytest.fixture
def client(home: Path) -> Iterator[Client]:
    """iris 1.0.0 in production and 1.0.1 registered, in the CLI's database."""
    with Client() as c:
        yield with_iris(c)


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    code, out, err = cli(capsys, *args)
    assert code == 0, (args, out, err)
    assert err == "", err
    return out


def ok_json(capsys: pytest.CaptureFixture[str], *args: object) -> Any:
    return json.loads(ok(capsys, *args, "--json"))


def lines(text: str) -> list[str]:
    """The output's lines, runs of spaces as one, without the table's padding."""
    return [re.sub(r" +", " ", line).strip() for line in text.splitlines()]


def stages(client: Client) -> dict[str, str]:
    return {v.version: v.stage.value for v in client.registry.list_versions("iris")}


def snapshot(client: Client) -> tuple[Any, ...]:
    """Everything a refused command must leave as it was."""
    return (client.rollouts.status("iris").to_dict(), stages(client),
            [e.to_dict() for e in client.rollouts.events("iris")],
            [(e.action, e.target) for e in client.audit.list(limit=1000)])


def test_status_of_a_model_without_rollouts(client: Client,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert lines(ok(capsys, "rollout", "status", "iris")) == [
        "iris: idle, 1.0.0 in production",
        "stable 1.0.0", "candidate -", "strategy -", "state idle", "weights 1.0.0 100%",
        "step -", "shadow -", "started -",
        "no events yet"]
    shown = ok_json(capsys, "rollout", "status", "iris")
    assert shown == client.rollouts.status("iris").to_dict()
    assert {k: shown[k] for k in ("model", "stable", "candidate", "strategy", "state",
                                  "weights", "shadow", "step", "steps")} == {
        "model": "iris", "stable": "1.0.0", "candidate": None, "strategy": None,
        "state": "idle", "weights": {"1.0.0": 1.0}, "shadow": None, "step": 0, "steps": []}
    assert ok(capsys, "rollout", "events", "iris") == "no deployment events for iris\n"
    assert ok_json(capsys, "rollout", "events", "iris") == {"events": []}


def test_a_canary_steps_is_promoted_and_rolled_back(client: Client,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    started = lines(ok(capsys, "deploy", "iris", "1.0.1", "--strategy", "canary"))
    assert started[0] == "iris: canary of 1.0.1 progressing"
    assert started[1:8] == ["stable 1.0.0", "candidate 1.0.1", "strategy canary",
                            "state progressing", "weights 1.0.0 95%, 1.0.1 5%",
                            "step 1 of 4 (5%)", "shadow -"]
    assert re.fullmatch(f"started {TIME}", started[8]), started[8]
    assert client.rollouts.status("iris").weights == {"1.0.0": 0.95, "1.0.1": 0.05}

    stepped = lines(ok(capsys, "rollout", "step", "iris", "--reason", "looks fine"))
    assert stepped[0] == "iris: canary of 1.0.1 progressing"
    assert "weights 1.0.0 75%, 1.0.1 25%" in stepped and "step 2 of 4 (25%)" in stepped

    status = lines(ok(capsys, "rollout", "status", "iris"))
    assert status[:9] == stepped
    assert status[9] == "last events (2 of 2):"
    assert re.fullmatch(
        f"{TIME} deploy 1.0.0 -> 1.0.1 canary of 1.0.1 against 1.0.0 started "
        r"\[step=0, weight=0.05\] \(by local:.+\)", status[10]), status[10]
    assert re.fullmatch(f"{TIME} step 1.0.0 -> 1.0.1 looks fine "
                        r"\[step=1, weight=0.25\] \(by local:.+\)", status[11]), status[11]
    assert len(status) == 12
    assert lines(ok(capsys, "rollout", "events", "iris")) == status[10:]

    promoted = lines(ok(capsys, "rollout", "promote", "iris"))
    assert promoted[0] == "iris: promoted, 1.0.1 in production"
    assert "weights 1.0.1 100%" in promoted and "candidate -" in promoted
    assert stages(client) == {"1.0.0": "archived", "1.0.1": "production"}
    assert client.registry.get_model("iris").production_version == "1.0.1"

    back = lines(ok(capsys, "rollback", "iris", "--reason", "users complain"))
    assert back[0] == "iris: rolled back, 1.0.0 in production"
    assert "weights 1.0.0 100%" in back and "state rolled_back" in back
    assert stages(client) == {"1.0.0": "production", "1.0.1": "archived"}

    events = ok_json(capsys, "rollout", "events", "iris")["events"]
    assert [(e["kind"], e["from_version"], e["to_version"], e["reason"]) for e in events] == [
        ("deploy", "1.0.0", "1.0.1", "canary of 1.0.1 against 1.0.0 started"),
        ("step", "1.0.0", "1.0.1", "looks fine"),
        ("promote", "1.0.0", "1.0.1", "promote requested"),
        ("rollback", "1.0.1", "1.0.0", "users complain")]
    assert len({e["actor"] for e in events}) == 1
    assert events[0]["actor"].startswith("local:")
    assert set(events[0]) >= {"at", "kind", "from_version", "to_version", "reason",
                              "numbers", "actor"}


def test_the_last_five_events_only_in_the_status(client: Client,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "deploy", "iris", "1.0.1")
    for _ in range(3):
        ok(capsys, "rollout", "pause", "iris")
        ok(capsys, "rollout", "resume", "iris")
    status = lines(ok(capsys, "rollout", "status", "iris"))
    assert status[9] == "last events (5 of 7):"
    assert [line.split()[3] for line in status[10:]] == [
        "resume", "pause", "resume", "pause", "resume"]
    assert len(lines(ok(capsys, "rollout", "events", "iris"))) == 7


def test_pause_resume_and_abort(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "deploy", "iris", "1.0.1", "--strategy", "canary")
    paused = ok_json(capsys, "rollout", "pause", "iris", "--reason", "the weekend")
    assert (paused["state"], paused["weights"]) == ("paused", {"1.0.0": 0.95, "1.0.1": 0.05})
    assert lines(ok(capsys, "rollout", "status", "iris"))[0] == \
        "iris: canary of 1.0.1 paused"
    code, out, err = cli(capsys, "rollout", "step", "iris")
    assert (code, out) == (4, "")
    assert err == "error: the canary of iris 1.0.1 is paused; resume it first\n"
    assert ok_json(capsys, "rollout", "resume", "iris")["state"] == "progressing"
    aborted = ok_json(capsys, "rollout", "abort", "iris", "--reason", "not worth it")
    assert (aborted["state"], aborted["candidate"], aborted["weights"]) == (
        "aborted", None, {"1.0.0": 1.0})
    assert lines(ok(capsys, "rollout", "status", "iris"))[0] == \
        "iris: aborted, 1.0.0 in production"
    assert [(e.kind, e.reason) for e in client.rollouts.events("iris")] == [
        ("deploy", "canary of 1.0.1 against 1.0.0 started"), ("pause", "the weekend"),
        ("resume", "resume requested"), ("abort", "not worth it")]
    assert stages(client) == {"1.0.0": "production", "1.0.1": "none"}


def options_of(strategy: Strategy, **given: Any) -> dict[str, Any]:
    return {**DEFAULTS[strategy], **given}


@pytest.mark.parametrize(("args", "expected"), [
    (["--strategy", "canary", "--steps", "10,50,100", "--step-duration", "5m",
      "--min-requests", "20", "--max-error-rate", "0.05", "--max-p99-ratio", "2"],
     options_of(Strategy.CANARY, steps=[10.0, 50.0, 100.0], step_duration_s=300.0,
                min_requests=20, max_error_rate=0.05, max_p99_ratio=2.0)),
    (["--strategy", "ab", "--split", "0.2", "--metric", "conversion", "--alpha", "0.1",
      "--min-samples", "50", "--auto-promote", "--keep-previous", "10m"],
     options_of(Strategy.AB, split=0.2, metric="conversion", alpha=0.1, min_samples=50,
                auto_promote=True, keep_previous_s=600.0)),
    (["--strategy", "ab", "--no-auto-promote"], options_of(Strategy.AB)),
    (["--strategy", "shadow", "--fraction", "0.25"],
     options_of(Strategy.SHADOW, fraction=0.25)),
    (["--strategy", "blue-green", "--keep-previous", "30s"],
     options_of(Strategy.BLUE_GREEN, keep_previous_s=30.0)),
    ([], options_of(Strategy.CANARY)),
])
def test_each_flag_is_the_option_of_its_name(client: Client,
                                             capsys: pytest.CaptureFixture[str],
                                             args: list[str],
                                             expected: dict[str, Any]) -> None:
    started = ok_json(capsys, "deploy", "iris", "1.0.1", *args)
    assert started["options"] == expected
    assert started == client.rollouts.status("iris").to_dict()


def test_the_json_of_each_strategy(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    shadow = ok_json(capsys, "deploy", "iris", "1.0.1", "--strategy", "shadow",
                     "--fraction", "0.25")
    assert (shadow["strategy"], shadow["weights"], shadow["shadow"]) == (
        "shadow", {"1.0.0": 1.0}, {"version": "1.0.1", "fraction": 0.25})
    shown = lines(ok(capsys, "rollout", "status", "iris"))
    assert shown[0] == "iris: shadow of 1.0.1 progressing"
    assert "shadow 1.0.1 (25% of requests copied)" in shown
    ok(capsys, "rollback", "iris")
    ab = ok_json(capsys, "deploy", "iris", "1.0.1", "--strategy", "ab", "--split", "0.2")
    assert (ab["strategy"], ab["weights"], ab["shadow"]) == (
        "ab", {"1.0.0": 0.8, "1.0.1": 0.2}, None)
    assert lines(ok(capsys, "rollout", "status", "iris"))[0] == \
        "iris: A/B test of 1.0.1 progressing"
    ok(capsys, "rollout", "abort", "iris")
    switched = lines(ok(capsys, "deploy", "iris", "latest", "--strategy", "blue-green"))
    assert switched[:6] == ["iris: promoted, 1.0.1 in production", "stable 1.0.1",
                            "candidate -", "strategy blue_green", "state promoted",
                            "weights 1.0.1 100%"]
    assert stages(client) == {"1.0.0": "archived", "1.0.1": "production"}


@pytest.mark.parametrize(("running", "args", "code", "message"), [
    # bad input: 1
    (False, ["deploy", "iris", "1.0.1", "--strategy", "linear"], 1,
     "error: unknown strategy 'linear': use one of blue_green, canary, ab, shadow"),
    (False, ["deploy", "iris", "1.0.1", "--strategy", "shadow", "--split", "0.3"], 1,
     "error: unknown option 'split' for shadow (its options: fraction, keep_previous_s)"),
    (False, ["deploy", "iris", "1.0.1", "--strategy", "blue-green", "--steps", "5,100"], 1,
     "error: unknown option 'steps' for blue_green"),
    (False, ["deploy", "iris", "1.0.1", "--steps", "50,25"], 1,
     "error: option 'steps' must be percentages that only grow"),
    (False, ["deploy", "iris", "1.0.1", "--steps", "5,x"], 1,
     "error: option 'steps' must be percentages separated by commas, e.g. 5,25,50,100; "
     "got '5,x'"),
    (False, ["deploy", "iris", "1.0.1", "--max-error-rate", "2"], 1,
     "error: option 'max_error_rate' must be from 0 to 1"),
    (False, ["deploy", "iris", "1.0.1", "--step-duration", "soon"], 1,
     "error: option 'step_duration_s' must be a duration"),
    (False, ["deploy", "iris", "1.0.1", "--strategy", "ab", "--split", "1"], 1,
     "error: option 'split' must leave the stable version some traffic"),
    (True, ["rollout", "pause", "iris", "--reason", ""], None, None),  # fine: the control
    # usage: 2
    (False, ["deploy", "iris", "1.0.1", "--split", "abc"], 2,
     "Invalid value for '--split'"),
    (False, ["deploy", "iris", "1.0.1", "--min-requests", "1.5"], 2,
     "Invalid value for '--min-requests'"),
    (False, ["deploy", "iris"], 2, "Missing argument 'version'"),
    # not found: 3
    (False, ["deploy", "iris", "9.9.9"], 3,
     "error: model 'iris' has no version or alias '9.9.9'; see 'modelhost models versions "
     "iris'"),
    (False, ["deploy", "nope", "1.0.1"], 3,
     "error: model 'nope' not found; see 'modelhost models list'"),
    (False, ["rollout", "status", "nope"], 3, "error: model 'nope' not found"),
    (False, ["rollout", "events", "nope", "--json"], 3, "error: model 'nope' not found"),
    (False, ["rollout", "promote", "nope"], 3, "error: model 'nope' not found"),
    (False, ["rollback", "nope"], 3, "error: model 'nope' not found"),
    # conflicts: 4
    (True, ["deploy", "iris", "1.0.1", "--strategy", "ab"], 4,
     "error: a canary of iris 1.0.1 is progressing; promote, abort or roll it back first"),
    (False, ["deploy", "iris", "1.0.0"], 4, "error: iris 1.0.0 is already in production"),
    (False, ["rollout", "promote", "iris"], 4,
     "error: iris has no rollout under way (its deployment is idle)"),
    (False, ["rollout", "step", "iris"], 4, "error: iris has no rollout under way"),
    (False, ["rollout", "abort", "iris"], 4, "error: iris has no rollout under way"),
    (False, ["rollout", "pause", "iris"], 4, "error: iris has no rollout under way"),
    (True, ["rollout", "resume", "iris"], 4,
     "error: iris has no paused rollout (its deployment is progressing)"),
    (False, ["rollback", "iris"], 4,
     "error: nothing to roll back for 'iris': no version that was in production before "
     "1.0.0 is archived"),
])
def test_refusals_exit_with_one_line_and_change_nothing(
        client: Client, capsys: pytest.CaptureFixture[str], running: bool,
        args: list[str], code: int | None, message: str | None) -> None:
    if running:
        client.deploy("iris", "1.0.1", strategy="canary")
    before = snapshot(client)
    got, out, err = cli(capsys, *args)
    if code is None:  # the control: the same setup, a command that works
        assert got == 0, err
        assert snapshot(client) != before
        return
    assert got == code, (out, err)
    assert message is not None and message in err, err
    assert out == "" and "Traceback" not in err
    if code != 2:
        assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert snapshot(client) == before


def test_help_names_every_command_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    rollout_help = ok(capsys, "rollout", "--help")
    for command in ("status", "events", "promote", "abort", "step", "pause", "resume"):
        assert command in rollout_help
    deploy_help = ok(capsys, "deploy", "--help")
    for flag in ("--strategy", "--steps", "--step-duration", "--min-requests",
                 "--max-error-rate", "--max-p99-ratio", "--split", "--metric", "--alpha",
                 "--min-samples", "--auto-promote", "--fraction", "--keep-previous",
                 "--json"):
        assert flag in deploy_help, flag
    assert "--reason" in ok(capsys, "rollback", "--help")


@pytest.mark.parametrize("args", [
    ["rollout", "status", "iris"], ["rollout", "events", "iris", "--json"],
    ["rollout", "pause", "iris"], ["rollback", "iris"], ["rollout", "--help"],
])
def test_reading_and_moving_a_rollout_loads_no_ml_or_web_stack(
        client: Client, home: Path, args: list[str]) -> None:
    from tests.test_imports import NOT_FOR_COMMANDS, loaded_after

    client.deploy("iris", "1.0.1", strategy="canary")
    status, loaded = loaded_after(args, NOT_FOR_COMMANDS, home=home)
    assert status == 0 and loaded == []

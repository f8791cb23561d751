"""``modelhost alerts add|list|remove|events|check``: the rule as a sentence and as JSON,
refusals with their exit codes that store nothing, events newest first with filters,
and a check now that fires rules on labelled predictions written as the server's log
does (a log action, and a rollback that changes the registry)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.fixtures_models import iris_example, iris_model

from modelhost import Client
from modelhost._utils import utcnow
from modelhost.cli import run
from modelhost.store.alerts import Firing
from modelhost.store.monitoring import Label, LogEntry

RULE_ID = r"[0-9a-f]{16}"
ROLLBACK = ["--metric", "accuracy", "--op", "<", "--threshold", "0.8", "--window", "1h",
            "--min-samples", "12", "--action", "rollback"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS", "MODELHOST_PIPELINES_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


@pytest.fixture
def client(home: Path) -> Iterator[Client]:
    """iris 1.0.0 in production and 1.0.1 registered, in the CLI's database."""
    with Client() as c:
        registry = c.registry
        registry.register(iris_model(), name="iris", input_example=iris_example())
        registry.register(iris_model(C=0.5), name="iris", input_example=iris_example())
        registry.transition("iris", "1.0.0", "staging")
        registry.transition("iris", "1.0.0", "production")
        yield c


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    code, out, err = cli(capsys, *args)
    assert code == 0, (args, out, err)
    return out


def ok_json(capsys: pytest.CaptureFixture[str], *args: object) -> Any:
    return json.loads(ok(capsys, *args, "--json"))


def add(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """Add a rule; its id."""
    rule_id: str = ok_json(capsys, "alerts", "add", "iris", *args)["id"]
    return rule_id


def alert_audit(client: Client) -> list[tuple[str, str, str]]:
    return [(e.action, e.target, e.actor) for e in reversed(client.audit.list(limit=1000))
            if e.action.startswith("alert.")]


def degrade(client: Client, version: str, *, rows: int = 15) -> None:
    """``rows`` one-row predictions of ``version`` answered five minutes ago, labelled: two
    of three labels disagree with the model (accuracy 1/3)."""
    at = utcnow() - dt.timedelta(minutes=5)
    predictions = client.predictions
    for i in range(rows):
        predicted = i % 3
        rid = f"{version}-flower-{i}"
        predictions.append([LogEntry(rid, "iris", version, "stable", at, 1, "[]",
                                     orjson.dumps({"predictions": [predicted]}).decode())])
        label = predicted if i % 3 == 0 else (predicted + 1) % 3
        predictions.record_feedback([Label(rid, "iris", version, f"[{label}]")], now=at)


def test_add_prints_the_rule_as_a_sentence_or_as_json(
        client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "alerts", "add", "iris", *ROLLBACK)
    assert re.fullmatch(
        rf"added alert {RULE_ID}: accuracy < 0\.8 over 1h, iris \(production\), at least "
        r"12 samples, cooldown 1h\n", out), out
    first = out.split()[2].rstrip(":")
    rule = ok_json(capsys, "alerts", "add", "iris", "--version", "1.0.0", "--metric",
                   "error_rate", "--op", ">=", "--threshold", "0.05", "--window", "30m",
                   "--cooldown", "2h", "--action", "webhook", "--url",
                   "https://ops:pw@hooks.example.com/alert?token=s3cr3t")
    assert re.fullmatch(RULE_ID, rule["id"])
    assert rule["created_by"].startswith("local:")
    assert {k: v for k, v in rule.items() if k not in ("id", "created_at", "created_by")} \
        == {"model": "iris", "version": "1.0.0", "metric": "error_rate", "op": ">=",
            "threshold": 0.05, "window_s": 1800, "min_samples": 100, "cooldown_s": 7200,
            "action": "webhook", "url": "https://hooks.example.com/alert?...",
            "last_fired_at": None}
    assert [r.id for r in client.alert_store.rules()] == [first, rule["id"]]
    assert alert_audit(client) == [("alert.add", f"alert:{first}", rule["created_by"]),
                                   ("alert.add", f"alert:{rule['id']}", rule["created_by"])]
    assert "s3cr3t" not in str(client.audit.list(action="alert.add"))


@pytest.mark.parametrize(("args", "code", "message"), [
    (["iris", "--metric", "acuracy", "--op", "<", "--threshold", "1"], 1,
     "error: the alert rule is not valid: unknown metric 'acuracy' (one of: accuracy, "),
    (["iris", "--metric", "accuracy", "--op", "==", "--threshold", "1"], 1,
     "unknown op '==' (one of: <, <=, >, >=)"),
    (["iris", "--metric", "accuracy", "--op", "<", "--threshold", "1", "--action", "page"],
     1, "unknown action 'page' (one of: log, webhook, rollback, pipeline)"),
    (["iris", "--metric", "accuracy", "--op", "<", "--threshold", "1", "--window", "soon"],
     1, "'soon' is not a duration"),
    (["iris", "--metric", "accuracy", "--op", "<", "--threshold", "1", "--min-samples",
      "0"], 1, "'min_samples' must be a whole number from 1"),
    (["iris", "--metric", "accuracy", "--op", "<", "--threshold", "nan"], 1,
     "threshold must be finite"),
    (["iris", "--metric", "accuracy", "--op", "<", "--threshold", "1", "--action",
      "webhook"], 1, "the webhook action needs 'url'"),
    (["iris", "--metric", "accuracy", "--op", "<", "--threshold", "1", "--action",
      "pipeline", "--spec", "retrain.yaml"], 1,
     "pipeline actions need MODELHOST_PIPELINES_DIR"),
    (["nope", "--metric", "accuracy", "--op", "<", "--threshold", "1"], 3,
     "error: model 'nope' not found; see 'modelhost models list'"),
    (["iris", "--metric", "accuracy", "--op", "<", "--threshold", "high"], 2,
     "Invalid value for '--threshold'"),
])
def test_add_refusals_exit_with_one_line_and_store_nothing(
        client: Client, capsys: pytest.CaptureFixture[str], args: list[str], code: int,
        message: str) -> None:
    got, out, err = cli(capsys, "alerts", "add", *args)
    assert got == code, (out, err)
    assert message in err
    assert "Traceback" not in err and out == ""
    assert ok_json(capsys, "alerts", "list") == {"alerts": []}
    assert client.alert_store.rules() == [] and alert_audit(client) == []


def test_list_one_line_per_rule(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert ok(capsys, "alerts", "list") == "no alert rules\n"
    first = add(capsys, *ROLLBACK)
    second = add(capsys, "--version", "1.0.1", "--metric", "drift_share", "--op", ">",
                 "--threshold", "0.5", "--min-samples", "200", "--cooldown", "30m")
    lines = ok(capsys, "alerts", "list").splitlines()
    assert lines == [
        f"{first}  accuracy < 0.8 over 1h, iris (production), at least 12 samples, "
        "cooldown 1h -> rollback (last fired: never)",
        f"{second}  drift_share > 0.5 over 1h, iris 1.0.1, at least 200 samples, "
        "cooldown 30m -> log (last fired: never)"]
    listed = ok_json(capsys, "alerts", "list")
    assert [(r["id"], r["metric"], r["action"]) for r in listed["alerts"]] == [
        (first, "accuracy", "rollback"), (second, "drift_share", "log")]
    assert ok_json(capsys, "alerts", "list", "--model", "other") == {"alerts": []}
    assert len(ok_json(capsys, "alerts", "list", "--model", "iris")["alerts"]) == 2


def test_remove_and_an_unknown_id(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    kept = add(capsys, *ROLLBACK)
    gone = add(capsys, "--metric", "f1", "--op", "<", "--threshold", "0.5")
    assert ok(capsys, "alerts", "remove", gone) == f"removed alert {gone}\n"
    code, out, err = cli(capsys, "alerts", "remove", gone)
    assert code == 3 and out == ""
    assert err.strip() == f"error: alert rule {gone!r} not found; see 'modelhost alerts list'"
    assert [r["id"] for r in ok_json(capsys, "alerts", "list")["alerts"]] == [kept]
    assert [(a, t) for a, t, _ in alert_audit(client)] == [
        ("alert.add", f"alert:{kept}"), ("alert.add", f"alert:{gone}"),
        ("alert.remove", f"alert:{gone}")]


def test_events_newest_first_with_filters(client: Client,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert ok(capsys, "alerts", "events") == "no alert events\n"
    assert ok_json(capsys, "alerts", "events") == {"events": []}
    first = add(capsys, *ROLLBACK[:-2], "--cooldown", "1m")
    second = add(capsys, "--version", "1.0.1", "--metric", "error_rate", "--op", ">",
                 "--threshold", "0.1")
    store = client.alert_store
    start = utcnow() - dt.timedelta(hours=1)
    fired = [store.fire(Firing(rule, "iris", version, value, 40),
                        now=start + dt.timedelta(minutes=minutes), outcome="log pending")
             for rule, version, value, minutes in ((first, "1.0.0", 0.75, 0),
                                                   (second, "1.0.1", 0.25, 1),
                                                   (first, "1.0.0", 0.5, 2))]
    stored = [e for e in fired if e is not None]
    ids = [e.id for e in stored]
    assert len(ids) == 3
    store.finish(ids[0], status="done", outcome="logged")
    lines = ok(capsys, "alerts", "events").splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(f"  {first}  iris 1.0.0: accuracy 0.5 < 0.8 (40 samples) -> "
                             "log pending: log pending")
    assert lines[1].endswith(f"  {second}  iris 1.0.1: error_rate 0.25 > 0.1 (40 samples) "
                             "-> log pending: log pending")
    assert lines[2].endswith(f"  {first}  iris 1.0.0: accuracy 0.75 < 0.8 (40 samples) -> "
                             "log done: logged")
    assert dt.datetime.fromisoformat(lines[2].split()[0]) == stored[0].at.replace(
        microsecond=0)

    def event_ids(*args: str) -> list[int]:
        return [e["id"] for e in ok_json(capsys, "alerts", "events", *args)["events"]]

    assert event_ids() == ids[::-1]
    assert event_ids("--rule", first) == [ids[2], ids[0]]
    assert event_ids("--rule", second, "--model", "iris") == [ids[1]]
    assert event_ids("--model", "other") == []
    assert event_ids("--limit", "2") == [ids[2], ids[1]]
    assert len(ok(capsys, "alerts", "events", "--limit", "1").splitlines()) == 1
    code, _, err = cli(capsys, "alerts", "events", "--limit", "0")
    assert code == 1 and "error: limit must be from 1 to 10,000, got 0" in err


def test_check_with_nothing_firing(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert ok(capsys, "alerts", "check") == "no alert fired\n"
    add(capsys, *ROLLBACK)
    degrade(client, "1.0.0", rows=11)  # one labelled row short of the rule's 12
    add(capsys, "--metric", "accuracy", "--op", ">", "--threshold", "0.9",
        "--min-samples", "1")  # enough rows, but accuracy is not above 0.9
    assert ok(capsys, "alerts", "check") == "no alert fired\n"
    assert ok_json(capsys, "alerts", "check") == {"fired": []}
    assert client.alert_store.events() == []
    assert client.registry.get_version("iris", "@production").version == "1.0.0"


def test_check_fires_a_log_rule_once(client: Client,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rule_id = add(capsys, *ROLLBACK[:-1], "log")
    degrade(client, "1.0.0")
    out = ok(capsys, "alerts", "check")
    assert out == (f"alert {rule_id}: accuracy of iris 1.0.0 was 0.3333 < 0.8 over the "
                   "last 1h (15 samples): done, logged\n")
    [event] = client.alert_store.events()
    assert (event.rule_id, event.version, event.samples, event.status, event.outcome) == (
        rule_id, "1.0.0", 15, "done", "logged")
    assert event.value == pytest.approx(5 / 15)
    # Within its cooldown the rule does not fire again.
    assert ok_json(capsys, "alerts", "check") == {"fired": []}
    [line] = ok(capsys, "alerts", "events").splitlines()
    assert line.endswith(f"  {rule_id}  iris 1.0.0: accuracy 0.3333 < 0.8 (15 samples) "
                         "-> log done: logged")
    assert [(a, actor) for a, _, actor in alert_audit(client)][1] == ("alert.fire", "alerts")
    assert client.registry.get_version("iris", "@production").version == "1.0.0"


def test_check_rolls_back_and_says_so(client: Client,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    registry = client.registry
    registry.transition("iris", "1.0.1", "staging")
    registry.transition("iris", "1.0.1", "production")
    rule_id = add(capsys, *ROLLBACK)
    degrade(client, "1.0.0")  # the archived version's rows do not count
    assert ok(capsys, "alerts", "check") == "no alert fired\n"
    degrade(client, "1.0.1")
    fired = ok_json(capsys, "alerts", "check")
    assert fired == {"fired": [{
        "rule_id": rule_id,
        "alert": f"alert {rule_id}: accuracy of iris 1.0.1 was 0.3333 < 0.8 over the last "
                 "1h (15 samples)",
        "status": "done", "outcome": "rolled back iris from 1.0.1 to 1.0.0"}]}
    assert {m.version: m.stage.value for m in registry.list_versions("iris")} == {
        "1.0.0": "production", "1.0.1": "archived"}
    [rollback] = client.audit.list(action="deployment.rollback")
    assert rollback.actor == "alerts" and f"alert {rule_id}" in rollback.after["reason"]
    out = ok(capsys, "alerts", "events", "--rule", rule_id)
    assert out.rstrip().endswith("-> rollback done: rolled back iris from 1.0.1 to 1.0.0")
    assert "last fired: never" not in ok(capsys, "alerts", "list")


def test_check_reports_a_rollback_with_nothing_to_roll_back_to(
        client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    rule_id = add(capsys, *ROLLBACK)
    degrade(client, "1.0.0")  # 1.0.0 is the first production version there has been
    code, out, err = cli(capsys, "alerts", "check")
    assert code == 0, err
    assert out.startswith(f"alert {rule_id}: accuracy of iris 1.0.0 was 0.3333 < 0.8")
    assert ": failed, " in out and "nothing to roll back for 'iris'" in out
    [event] = client.alert_store.events()
    assert event.status == "failed" and event.outcome in out
    assert client.registry.get_version("iris", "@production").version == "1.0.0"

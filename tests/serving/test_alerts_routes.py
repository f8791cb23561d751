"""``/v1/alerts`` and ``/v1/alerts/events`` through the real app with keys on (§3.8): the
rule's shape (a webhook's URL shown without its query or credentials), who may manage and
read rules, refusals in the §3.6 shape that store nothing, the audit log, a server that
does not evaluate rules or has no alert store, and a rollback fired by the server's own
evaluation, end to end."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import TODAY
from tests.serving.conftest import records

from modelhost import Client
from modelhost._utils import utcnow
from modelhost.serving import (
    ModelhostApp,
    MonitorOptions,
    PoolOptions,
    ServerOptions,
    create_app,
)
from modelhost.store.alerts import Firing

pytestmark = pytest.mark.anyio

# Rules are managed, never evaluated: the loop's first pass would come after an hour.
NOT_EVALUATING = MonitorOptions(flush_s=3600.0, alerts_interval_s=3600.0)
DEADLINE_S = 15.0
RULE = {"model": "iris", "metric": "accuracy", "op": "<", "threshold": 0.8}
SECRET_URL = "https://hook-user:hook-pass@hooks.example.com:8443/notify?token=s3cr3t"
SHOWN_URL = "https://hooks.example.com:8443/notify?..."
MISSING = object()  # a field left out of the body


@dataclass(frozen=True)
class Keys:
    deployer: dict[str, str]
    viewer: dict[str, str]
    predictor: dict[str, str]
    deployer_actor: str


@pytest.fixture
def keys(iris_client: Client) -> Keys:
    def bearer(role: str) -> tuple[dict[str, str], str]:
        created = iris_client.keys.create(name=f"ci-{role}", role=role)
        return {"authorization": f"Bearer {created.secret}"}, \
            f"key:{created.key.id} (ci-{role})"

    deployer, actor = bearer("deployer")
    return Keys(deployer, bearer("viewer")[0], bearer("predictor")[0], actor)


@asynccontextmanager
async def alert_app(client: Client, monitor: MonitorOptions = NOT_EVALUATING, *,
                    with_store: bool = True, reload_interval_s: float = 3600.0
                    ) -> AsyncIterator[tuple[ModelhostApp, httpx.AsyncClient]]:
    """The app as ``modelhost serve`` wires it, keys on (without the alert store if told)."""
    app = create_app(client.registry, options=ServerOptions(
        auth=True, pool=PoolOptions(reload_interval_s=reload_interval_s), monitor=monitor),
        keys=client.keys, audit=client.audit, predictions=client.predictions,
        alerts=client.alert_store if with_store else None,
        leases=client.leases if with_store else None,
        deployments=client.deployments if with_store else None, today=lambda: TODAY)
    async with app.running(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                base_url="http://test") as http:
        yield app, http


def alert_audit(client: Client) -> list[tuple[str, str, str]]:
    """(action, target, actor) of the alert entries of the audit log, oldest first."""
    return [(e.action, e.target, e.actor) for e in reversed(client.audit.list(limit=1000))
            if e.action.startswith("alert.")]


def assert_error(response: httpx.Response, status: int, code: str, message: str) -> None:
    """The §3.6 shape, with the request's id and ``message`` in its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert message in error["message"], error
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


async def test_a_deployer_adds_a_rule_in_the_documented_shape(iris_client: Client,
                                                             keys: Keys) -> None:
    async with alert_app(iris_client) as (_, http):
        response = await http.post("/v1/alerts", headers=keys.deployer, json={
            **RULE, "window": "30m", "min_samples": 5, "action": "webhook",
            "url": SECRET_URL})
        assert response.status_code == 201, response.text
        rule = response.json()
        listed = await http.get("/v1/alerts", headers=keys.viewer)
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"alerts": [rule]}
    assert re.fullmatch(r"[0-9a-f]{16}", rule["id"]), rule["id"]
    assert dt.datetime.fromisoformat(rule["created_at"]).tzinfo is not None
    assert {k: v for k, v in rule.items() if k not in ("id", "created_at")} == {
        "model": "iris", "version": None, "metric": "accuracy", "op": "<",
        "threshold": 0.8, "window_s": 1800, "min_samples": 5, "cooldown_s": 3600,
        "action": "webhook", "url": SHOWN_URL, "created_by": keys.deployer_actor,
        "last_fired_at": None}
    # The action needs the whole address; only what is shown and audited is redacted.
    [stored] = iris_client.alert_store.rules()
    assert stored.options == {"url": SECRET_URL}
    [entry] = [e for e in iris_client.audit.list() if e.action == "alert.add"]
    assert (entry.target, entry.actor) == (f"alert:{rule['id']}", keys.deployer_actor)
    assert entry.after is not None and entry.after["options"] == {"url": SHOWN_URL}
    for secret in ("s3cr3t", "hook-pass", "hook-user"):
        assert secret not in response.text and secret not in listed.text
        assert secret not in str(entry.after)


async def test_defaults_and_a_fixed_version(iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client) as (_, http):
        response = await http.post("/v1/alerts", headers=keys.deployer,
                                   json={**RULE, "version": "1.0.0", "cooldown": "2h"})
        assert response.status_code == 201, response.text
    rule = response.json()
    assert (rule["version"], rule["window_s"], rule["min_samples"], rule["cooldown_s"],
            rule["action"]) == ("1.0.0", 3600, 100, 7200, "log")
    assert "url" not in rule and "spec" not in rule


async def test_who_may_manage_and_read_rules(iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client) as (_, http):
        added = await http.post("/v1/alerts", headers=keys.deployer, json=RULE)
        assert added.status_code == 201, added.text
        rule_id = added.json()["id"]
        audited = alert_audit(iris_client)
        for who, status, code in ((keys.viewer, 403, "forbidden"),
                                  (keys.predictor, 403, "forbidden"),
                                  ({}, 401, "unauthorized")):
            assert_error(await http.post("/v1/alerts", headers=who,
                                         json={**RULE, "op": ">"}), status, code, "")
            assert_error(await http.delete(f"/v1/alerts/{rule_id}", headers=who),
                         status, code, "")
        for path in ("/v1/alerts", "/v1/alerts/events"):
            for who in (keys.viewer, keys.deployer):
                response = await http.get(path, headers=who)
                assert response.status_code == 200, (path, response.text)
            assert_error(await http.get(path, headers=keys.predictor), 403, "forbidden",
                         "the predictor role does not allow")
            assert_error(await http.get(path), 401, "unauthorized", "")
        listed = await http.get("/v1/alerts", headers=keys.viewer)
    assert [r["id"] for r in listed.json()["alerts"]] == [rule_id]
    assert [r.id for r in iris_client.alert_store.rules()] == [rule_id]
    assert alert_audit(iris_client) == audited  # refusals change nothing
    denied = [e for e in iris_client.audit.list() if e.action == "access.denied"]
    assert len(denied) == 6  # the refused writes, and only those, as denied attempts


async def test_remove_then_the_same_id_is_unknown(iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client) as (_, http):
        kept = (await http.post("/v1/alerts", headers=keys.deployer,
                                json={**RULE, "op": "<="})).json()["id"]
        rule_id = (await http.post("/v1/alerts", headers=keys.deployer,
                                   json=RULE)).json()["id"]
        # An event of the rule, as an evaluation stores it: it outlives the rule.
        event = iris_client.alert_store.fire(Firing(rule_id, "iris", "1.0.0", 0.5, 10),
                                             now=utcnow(), outcome="log pending")
        assert event is not None
        removed = await http.delete(f"/v1/alerts/{rule_id}", headers=keys.deployer)
        assert removed.status_code == 204, removed.text
        assert removed.content == b""
        assert_error(await http.delete(f"/v1/alerts/{rule_id}", headers=keys.deployer),
                     404, "not_found", f"alert rule {rule_id!r} not found")
        assert_error(await http.delete("/v1/alerts/never-was", headers=keys.deployer),
                     404, "not_found", "see GET /v1/alerts")
        listed = (await http.get("/v1/alerts", headers=keys.viewer)).json()
        events = (await http.get("/v1/alerts/events", headers=keys.viewer)).json()
    assert [r["id"] for r in listed["alerts"]] == [kept]
    assert [(e["id"], e["rule_id"]) for e in events["events"]] == [(event.id, rule_id)]
    audited = alert_audit(iris_client)
    assert [(action, target) for action, target, _ in audited] == [
        ("alert.add", f"alert:{kept}"), ("alert.add", f"alert:{rule_id}"),
        ("alert.fire", f"alert:{rule_id}"), ("alert.remove", f"alert:{rule_id}")]
    assert {audited[i][2] for i in (0, 1, 3)} == {keys.deployer_actor}
    [entry] = [e for e in iris_client.audit.list() if e.action == "alert.remove"]
    assert entry.before is not None and entry.before["metric"] == "accuracy"


@pytest.mark.parametrize(("change", "status", "code", "message"), [
    ({"metric": "acuracy"}, 422, "invalid_input", "unknown metric 'acuracy' (one of: "),
    ({"op": "=<"}, 422, "invalid_input", "unknown op '=<' (one of: <, <=, >, >=)"),
    ({"action": "page"}, 422, "invalid_input", "unknown action 'page' (one of: log, "),
    ({"severity": "high"}, 422, "invalid_input",
     "body.severity: Extra inputs are not permitted"),
    ({"threshold": "0.8"}, 422, "invalid_input", "threshold must be a number, got '0.8'"),
    ({"threshold": None}, 422, "invalid_input", "'threshold' is required"),
    ({"threshold": MISSING}, 422, "invalid_input", "body.threshold: Field required"),
    ({"window": "soon"}, 422, "invalid_input", "'soon' is not a duration"),
    ({"cooldown": "0m"}, 422, "invalid_input", "'0m' is not a duration"),
    ({"min_samples": 0}, 422, "invalid_input", "'min_samples' must be a whole number"),
    ({"min_samples": 5.5}, 422, "invalid_input", "'min_samples' must be a whole number"),
    ({"metric": None}, 422, "invalid_input", "'metric' is required"),
    ({"metric": MISSING}, 422, "invalid_input", "body.metric: Field required"),
    ({"action": "webhook"}, 422, "invalid_input", "the webhook action needs 'url'"),
    ({"action": "webhook", "url": "ftp://hooks.example.com/x"}, 422, "invalid_input",
     "an http:// or https:// address"),
    ({"url": "https://hooks.example.com/x"}, 422, "invalid_input",
     "'url' is for the webhook action only"),
    ({"action": "pipeline", "spec": "retrain.yaml"}, 422, "invalid_input",
     "pipeline actions need MODELHOST_PIPELINES_DIR"),
    ({"model": "../etc"}, 422, "invalid_input", "invalid model name '../etc'"),
    ({"model": "nope"}, 404, "not_found", "model 'nope' not found"),
])
async def test_refusals_name_the_problem_and_store_nothing(
        iris_client: Client, keys: Keys, change: dict[str, Any], status: int, code: str,
        message: str) -> None:
    body = {k: v for k, v in {**RULE, **change}.items() if v is not MISSING}
    async with alert_app(iris_client) as (_, http):
        assert_error(await http.post("/v1/alerts", headers=keys.deployer, json=body),
                     status, code, message)
        listed = await http.get("/v1/alerts", headers=keys.viewer)
    assert listed.json() == {"alerts": []}
    assert iris_client.alert_store.rules() == []
    assert alert_audit(iris_client) == []


@pytest.mark.parametrize(("content", "status", "message"), [
    (b"{nope", 400, "the body is not valid JSON"),
    (b"[1, 2]", 422, "body: Input should be a valid dictionary"),
])
async def test_a_body_that_is_no_rule_at_all(iris_client: Client, keys: Keys,
                                             content: bytes, status: int,
                                             message: str) -> None:
    async with alert_app(iris_client) as (_, http):
        response = await http.post("/v1/alerts", content=content, headers={
            **keys.deployer, "content-type": "application/json"})
        assert_error(response, status, response.json()["error"]["code"], message)
    assert iris_client.alert_store.rules() == [] and alert_audit(iris_client) == []


@pytest.mark.parametrize("url", ["https://hooks.example.com:99999/x",
                                 "https://[::1/x"])
async def test_a_webhook_url_that_does_not_parse_is_a_422(iris_client: Client, keys: Keys,
                                                         url: str) -> None:
    app = create_app(iris_client.registry, options=ServerOptions(
        auth=True, pool=PoolOptions(reload_interval_s=3600.0), monitor=NOT_EVALUATING),
        keys=iris_client.keys, audit=iris_client.audit, alerts=iris_client.alert_store,
        today=lambda: TODAY)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.running(), httpx.AsyncClient(transport=transport,
                                                base_url="http://test") as http:
        response = await http.post("/v1/alerts", headers=keys.deployer,
                                   json={**RULE, "action": "webhook", "url": url})
    assert iris_client.alert_store.rules() == []
    assert_error(response, 422, "invalid_input", "url")


async def test_an_unknown_version_is_a_404(iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client) as (_, http):
        response = await http.post("/v1/alerts", headers=keys.deployer,
                                   json={**RULE, "version": "9.9.9"})
    assert iris_client.alert_store.rules() == []
    assert_error(response, 404, "not_found", "9.9.9")


async def test_every_wrong_field_is_named_at_once(iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client) as (_, http):
        response = await http.post("/v1/alerts", headers=keys.deployer, json={
            **RULE, "metric": "acuracy", "op": "=<", "action": "page"})
    assert iris_client.alert_store.rules() == []
    assert_error(response, 422, "invalid_input", "acuracy")
    text = response.text
    assert "'=<'" in text and "'page'" in text


async def test_events_newest_first_with_filters(iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client) as (_, http):
        first = (await http.post("/v1/alerts", headers=keys.deployer, json={
            **RULE, "cooldown": "1m"})).json()["id"]
        second = (await http.post("/v1/alerts", headers=keys.deployer, json={
            **RULE, "version": "1.0.1", "metric": "error_rate", "op": ">",
            "threshold": 0.1})).json()["id"]
        start = utcnow() - dt.timedelta(hours=1)
        store = iris_client.alert_store
        fired = [store.fire(Firing(rule, "iris", version, value, 50),
                            now=start + dt.timedelta(minutes=minutes), outcome="pending")
                 for rule, version, value, minutes in (
                     (first, "1.0.0", 0.7, 0), (second, "1.0.1", 0.2, 1),
                     (first, "1.0.0", 0.6, 2))]
        ids = [e.id for e in fired if e is not None]
        assert len(ids) == 3
        store.finish(ids[0], status="done", outcome="logged")

        async def events(query: str = "") -> list[dict[str, Any]]:
            response = await http.get(f"/v1/alerts/events{query}", headers=keys.viewer)
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()["events"]
            return found

        every = await events()
        assert [e["id"] for e in every] == ids[::-1]
        assert [e["id"] for e in await events(f"?rule_id={first}")] == [ids[2], ids[0]]
        assert [e["id"] for e in await events("?limit=1")] == [ids[2]]
        assert [e["id"] for e in await events(f"?rule_id={second}&model=iris")] == [ids[1]]
        assert await events("?model=other") == []
        assert_error(await http.get("/v1/alerts/events?limit=0", headers=keys.viewer), 422,
                     "invalid_input", "query.limit")
    oldest = every[-1]
    assert set(oldest) == {"id", "rule_id", "model", "version", "metric", "value", "op",
                           "threshold", "samples", "action", "status", "outcome", "at",
                           "updated_at"}
    assert (oldest["rule_id"], oldest["version"], oldest["metric"], oldest["value"],
            oldest["op"], oldest["threshold"], oldest["samples"], oldest["action"],
            oldest["status"], oldest["outcome"]) == (
        first, "1.0.0", "accuracy", 0.7, "<", 0.8, 50, "log", "done", "logged")
    assert every[1]["status"] == "pending" and every[1]["metric"] == "error_rate"


async def test_a_server_that_does_not_evaluate_still_manages_rules(
        iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client, MonitorOptions(alerts=False)) as (_, http):
        added = await http.post("/v1/alerts", headers=keys.deployer, json=RULE)
        assert added.status_code == 201, added.text
        rule_id = added.json()["id"]
        listed = await http.get("/v1/alerts", headers=keys.viewer)
        assert [r["id"] for r in listed.json()["alerts"]] == [rule_id]
        events = await http.get("/v1/alerts/events", headers=keys.viewer)
        assert events.json() == {"events": []}
        removed = await http.delete(f"/v1/alerts/{rule_id}", headers=keys.deployer)
        assert removed.status_code == 204, removed.text
    assert iris_client.alert_store.rules() == []
    assert [a for a, _, _ in alert_audit(iris_client)] == ["alert.add", "alert.remove"]


async def test_without_an_alert_store_every_route_says_so(iris_client: Client,
                                                          keys: Keys) -> None:
    async with alert_app(iris_client, with_store=False) as (_, http):
        for method, path, who in (("GET", "/v1/alerts", keys.viewer),
                                  ("GET", "/v1/alerts/events", keys.viewer),
                                  ("POST", "/v1/alerts", keys.deployer),
                                  ("DELETE", "/v1/alerts/abc", keys.deployer)):
            response = await http.request(method, path, headers=who,
                                          json=RULE if method == "POST" else None)
            assert_error(response, 404, "not_found",
                         "alert rules are not available on this server")
        # The roles are checked first, as everywhere.
        assert_error(await http.get("/v1/alerts", headers=keys.predictor), 403,
                     "forbidden", "")
    assert iris_client.alert_store.rules() == [] and alert_audit(iris_client) == []


async def test_without_an_alert_store_the_message_does_not_blame_alerts_false(
        iris_client: Client, keys: Keys) -> None:
    async with alert_app(iris_client, with_store=False) as (_, http):
        response = await http.get("/v1/alerts", headers=keys.viewer)
    assert_error(response, 404, "not_found", "alert")
    assert "MODELHOST_ALERTS=false" not in response.json()["error"]["message"]


# --- a rollback fired by the server's own evaluation ----------------------------------


async def poll(deadline: float, check: Any) -> Any:
    """``await check()`` until it returns something truthy or the deadline passes (then
    its last answer, for the caller's assertion to show)."""
    while True:
        found = await check()
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_a_served_rule_rolls_back_a_decaying_version(iris_client: Client,
                                                           keys: Keys) -> None:
    registry = iris_client.registry
    registry.transition("iris", "1.0.1", "staging")
    registry.transition("iris", "1.0.1", "production")
    assert {m.version: m.stage.value for m in registry.list_versions("iris")} == {
        "1.0.0": "archived", "1.0.1": "production"}
    monitor = MonitorOptions(flush_s=0.05, alerts_interval_s=0.2)
    async with alert_app(iris_client, monitor, reload_interval_s=0.2) as (_, http):
        added = await http.post("/v1/alerts", headers=keys.deployer, json={
            **RULE, "min_samples": 12, "action": "rollback"})
        assert added.status_code == 201, added.text
        rule_id = added.json()["id"]
        items = []
        for i, row in enumerate(records(15)):
            response = await http.post(
                "/v1/models/iris/predict", json={"inputs": [row]},
                headers={**keys.predictor, "X-Request-Id": f"flower-{i}"})
            assert response.status_code == 200, response.text
            assert response.headers["x-model-version"] == "1.0.1"
            predicted = response.json()["predictions"][0]
            # Two of three labels disagree with the model: accuracy 1/3.
            items.append({"request_id": f"flower-{i}",
                          "label": predicted if i % 3 == 0 else (predicted + 1) % 3})
        feedback = await http.post("/v1/feedback", headers=keys.predictor,
                                   json={"items": items})
        assert feedback.status_code == 202, feedback.text
        assert feedback.json() == {"accepted": 15}

        async def finished() -> list[dict[str, Any]]:
            response = await http.get(f"/v1/alerts/events?rule_id={rule_id}",
                                      headers=keys.viewer)
            assert response.status_code == 200, response.text
            events: list[dict[str, Any]] = response.json()["events"]
            return events if events and events[0]["status"] != "pending" else []

        events = await poll(time.monotonic() + DEADLINE_S, finished)
        assert len(events) == 1, events
        [event] = events
        assert (event["status"], event["outcome"]) == (
            "done", "rolled back iris from 1.0.1 to 1.0.0")
        assert (event["model"], event["version"], event["metric"], event["action"],
                event["samples"]) == ("iris", "1.0.1", "accuracy", "rollback", 15)
        assert event["value"] == pytest.approx(5 / 15)
        assert {m.version: m.stage.value for m in registry.list_versions("iris")} == {
            "1.0.0": "production", "1.0.1": "archived"}

        async def served_by_1_0_0() -> bool:
            response = await http.post("/v1/models/iris/predict",
                                       json={"inputs": records(1)}, headers=keys.predictor)
            assert response.status_code == 200, response.text
            return response.headers["x-model-version"] == "1.0.0"

        assert await poll(time.monotonic() + DEADLINE_S, served_by_1_0_0)
        rules = (await http.get("/v1/alerts", headers=keys.viewer)).json()["alerts"]
        assert rules[0]["last_fired_at"] == event["at"]
    [rollback] = iris_client.audit.list(action="deployment.rollback")
    assert rollback.actor == "alerts"
    assert f"alert {rule_id}: accuracy of iris 1.0.1 was 0.3333 < 0.8" in rollback.after["reason"]
    [fire] = iris_client.audit.list(action="alert.fire")
    assert fire.actor == "alerts" and fire.after is not None
    assert (fire.after["version"], fire.after["samples"]) == ("1.0.1", 15)

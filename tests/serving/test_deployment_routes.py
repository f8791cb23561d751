"""``/v1/deployments/{name}`` through the real app with keys on (PRODUCT.md §3.7): the
deployment's shape, a canary from its first step to its promotion and a rollback that
restores the stages, the other strategies, pause/resume/abort, who may read and change
deployments, refusals in the §3.6 shape that change nothing, the audit log's actor, the
service's blocking calls kept off the event loop, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import TODAY
from tests.serving.conftest import records

from modelhost import Client
from modelhost.entities import Deployment, DeploymentEvent, StageChange
from modelhost.security import Permission
from modelhost.serving import ModelhostApp, PoolOptions, ServerOptions, create_app
from modelhost.serving.routes import Action, Routes
from modelhost.store.deployments import Decide, DeploymentStore, ModelFacts

pytestmark = pytest.mark.anyio

CANARY = {"version": "1.0.1", "strategy": "canary"}
WRITES = (("POST", "/v1/deployments/iris", CANARY),
          ("POST", "/v1/deployments/iris/rollout", {"action": "promote"}),
          ("POST", "/v1/deployments/iris/rollback", {}))
READS = ("/v1/deployments/iris", "/v1/deployments/iris/events")


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


class ThreadSpy(DeploymentStore):
    """The real store, noting the thread each call runs in."""

    def __init__(self, store: DeploymentStore) -> None:
        super().__init__(store._db)
        self.threads: list[tuple[str, int]] = []

    def _note(self, call: str) -> None:
        self.threads.append((call, threading.get_ident()))

    def get(self, model: str) -> Deployment:
        self._note("get")
        return super().get(model)

    def get_with_facts(self, model: str) -> tuple[Deployment, ModelFacts]:
        self._note("get_with_facts")
        return super().get_with_facts(model)

    def events(self, model: str, *, limit: int = 1000) -> list[DeploymentEvent]:
        self._note("events")
        return super().events(model, limit=limit)

    def change(self, model: str, decide: Decide) -> tuple[Deployment, list[StageChange]]:
        self._note("change")
        return super().change(model, decide)


@asynccontextmanager
async def deployment_app(client: Client, *, with_store: bool = True,
                         store: DeploymentStore | None = None,
                         reload_interval_s: float = 3600.0
                         ) -> AsyncIterator[tuple[ModelhostApp, httpx.AsyncClient]]:
    """The app as ``modelhost serve`` wires it, keys on, with the client's deployment
    store (or ``store``; none if told)."""
    deployments = (store or client.deployments) if with_store else None
    app = create_app(client.registry, options=ServerOptions(
        auth=True, pool=PoolOptions(reload_interval_s=reload_interval_s)), keys=client.keys,
        audit=client.audit, deployments=deployments, today=lambda: TODAY)
    async with app.running(), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                base_url="http://test") as http:
        yield app, http


def assert_error(response: httpx.Response, status: int, code: str, message: str) -> None:
    """The §3.6 shape, with the request's id and ``message`` in its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert message in error["message"], error
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


def stages(client: Client) -> dict[str, str]:
    return {v.version: v.stage.value for v in client.registry.list_versions("iris")}


def snapshot(client: Client) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    return (client.rollouts.status("iris").to_dict(), stages(client),
            [e.to_dict() for e in client.rollouts.events("iris")],
            [(e.action, e.target) for e in client.audit.list(limit=1000)
             if not e.action.startswith("access.")])


def audit_entries(client: Client) -> list[tuple[str, str, str]]:
    """(action, target, actor) of the audit log's entries, oldest first."""
    return [(e.action, e.target, e.actor) for e in reversed(client.audit.list(limit=1000))]


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    answer: httpx.Response = await response
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


# --- shapes and the canary's life ------------------------------------------------------


async def test_a_model_without_rollouts_is_idle(iris_client: Client, keys: Keys) -> None:
    async with deployment_app(iris_client) as (_, http):
        deployment = await ok(http.get("/v1/deployments/iris", headers=keys.viewer))
        events = await ok(http.get("/v1/deployments/iris/events", headers=keys.viewer))
    assert {k: deployment[k] for k in ("model", "stable", "candidate", "strategy", "state",
                                       "weights", "shadow", "step", "steps", "started_at",
                                       "updated_at")} == {
        "model": "iris", "stable": "1.0.0", "candidate": None, "strategy": None,
        "state": "idle", "weights": {"1.0.0": 1.0}, "shadow": None, "step": 0, "steps": [],
        "started_at": None, "updated_at": None}
    assert events == {"events": []}


async def test_a_canary_steps_is_promoted_and_rolled_back(iris_client: Client,
                                                          keys: Keys) -> None:
    audited_before = len(audit_entries(iris_client))
    async with deployment_app(iris_client) as (_, http):
        started = await ok(http.post("/v1/deployments/iris", headers=keys.deployer,
                                     json={**CANARY, "options": {}}), 202)
        shown = await ok(http.get("/v1/deployments/iris", headers=keys.viewer))
        events = (await ok(http.get("/v1/deployments/iris/events",
                                    headers=keys.viewer)))["events"]
        assert shown == started
        assert {k: started[k] for k in ("model", "stable", "candidate", "strategy", "state",
                                        "weights", "shadow", "step", "steps")} == {
            "model": "iris", "stable": "1.0.0", "candidate": "1.0.1", "strategy": "canary",
            "state": "progressing", "weights": {"1.0.0": 0.95, "1.0.1": 0.05},
            "shadow": None, "step": 0, "steps": [5, 25, 50, 100]}
        assert sum(started["weights"].values()) == pytest.approx(1.0)
        assert dt.datetime.fromisoformat(started["started_at"]).tzinfo is not None
        assert stages(iris_client) == {"1.0.0": "production", "1.0.1": "none"}
        [deploy] = events
        assert {k: deploy[k] for k in ("kind", "from_version", "to_version", "numbers",
                                       "actor")} == {
            "kind": "deploy", "from_version": "1.0.0", "to_version": "1.0.1",
            "numbers": {"step": 0, "weight": 0.05}, "actor": keys.deployer_actor}
        assert "canary" in deploy["reason"] and "1.0.1" in deploy["reason"]
        assert dt.datetime.fromisoformat(deploy["at"]).tzinfo is not None

        stepped = await ok(http.post("/v1/deployments/iris/rollout", headers=keys.deployer,
                                     json={"action": "step", "reason": "looks fine"}))
        assert (stepped["state"], stepped["step"], stepped["weights"]) == (
            "progressing", 1, {"1.0.0": 0.75, "1.0.1": 0.25})

        promoted = await ok(http.post("/v1/deployments/iris/rollout", headers=keys.deployer,
                                      json={"action": "promote"}))
        assert (promoted["state"], promoted["stable"], promoted["candidate"],
                promoted["weights"]) == ("promoted", "1.0.1", None, {"1.0.1": 1.0})
        assert stages(iris_client) == {"1.0.0": "archived", "1.0.1": "production"}
        assert iris_client.registry.get_model("iris").production_version == "1.0.1"

        back = await ok(http.post("/v1/deployments/iris/rollback", headers=keys.deployer,
                                  json={"reason": "users complain"}))
        assert (back["state"], back["stable"], back["candidate"], back["weights"]) == (
            "rolled_back", "1.0.0", None, {"1.0.0": 1.0})
        assert stages(iris_client) == {"1.0.0": "production", "1.0.1": "archived"}
        events = (await ok(http.get("/v1/deployments/iris/events",
                                    headers=keys.viewer)))["events"]
    assert [(e["kind"], e["from_version"], e["to_version"], e["reason"]) for e in events] == [
        ("deploy", "1.0.0", "1.0.1", deploy["reason"]),
        ("step", "1.0.0", "1.0.1", "looks fine"),
        ("promote", "1.0.0", "1.0.1", "promote requested"),
        ("rollback", "1.0.1", "1.0.0", "users complain")]
    assert {e["actor"] for e in events} == {keys.deployer_actor}
    assert events[1]["numbers"] == {"step": 1, "weight": 0.25}
    audited = audit_entries(iris_client)[audited_before:]
    assert [a for a, _, _ in audited if a.startswith("deployment.")] == [
        "deployment.deploy", "deployment.step", "deployment.promote",
        "deployment.rollback"]
    assert {actor for _, _, actor in audited} == {keys.deployer_actor}
    assert [(a, t) for a, t, _ in audited if a == "model.stage"] == [
        ("model.stage", "iris:1.0.0"), ("model.stage", "iris:1.0.1"),
        ("model.stage", "iris:1.0.1"), ("model.stage", "iris:1.0.1"),
        ("model.stage", "iris:1.0.0")]


async def test_a_rollback_needs_no_body(iris_client: Client, keys: Keys) -> None:
    iris_client.deploy("iris", "1.0.1", strategy="canary")
    async with deployment_app(iris_client) as (_, http):
        back = await ok(http.post("/v1/deployments/iris/rollback", headers=keys.deployer))
    assert (back["state"], back["stable"], back["candidate"], back["weights"]) == (
        "rolled_back", "1.0.0", None, {"1.0.0": 1.0})
    assert stages(iris_client) == {"1.0.0": "production", "1.0.1": "none"}
    assert iris_client.rollouts.events("iris")[-1].reason == "rollback requested"


@pytest.mark.parametrize(("strategy", "options", "expected"), [
    ("blue-green", {"keep_previous_s": "10m"},
     {"strategy": "blue_green", "state": "promoted", "stable": "1.0.1", "candidate": None,
      "weights": {"1.0.1": 1.0}, "shadow": None}),
    ("ab", {"split": 0.2, "metric": "accuracy"},
     {"strategy": "ab", "state": "progressing", "stable": "1.0.0", "candidate": "1.0.1",
      "weights": {"1.0.0": 0.8, "1.0.1": 0.2}, "shadow": None}),
    ("shadow", {"fraction": 0.25},
     {"strategy": "shadow", "state": "progressing", "stable": "1.0.0", "candidate": "1.0.1",
      "weights": {"1.0.0": 1.0}, "shadow": {"version": "1.0.1", "fraction": 0.25}}),
])
async def test_the_other_strategies(iris_client: Client, keys: Keys, strategy: str,
                                    options: dict[str, Any], expected: dict[str, Any]) -> None:
    async with deployment_app(iris_client) as (_, http):
        started = await ok(http.post("/v1/deployments/iris", headers=keys.deployer, json={
            "version": "1.0.1", "strategy": strategy, "options": options}), 202)
        shown = await ok(http.get("/v1/deployments/iris", headers=keys.viewer))
    assert shown == started
    assert {k: started[k] for k in expected} == expected
    assert started["options"]["keep_previous_s"] == (600.0 if strategy == "blue-green"
                                                     else started["options"]["keep_previous_s"])
    production = "1.0.1" if strategy == "blue-green" else "1.0.0"
    assert iris_client.registry.get_model("iris").production_version == production


@pytest.mark.parametrize("ref", ["latest", "challenger"])
async def test_a_version_given_as_latest_or_an_alias(iris_client: Client, keys: Keys,
                                                     ref: str) -> None:
    iris_client.registry.set_alias("iris", "challenger", "1.0.1")
    async with deployment_app(iris_client) as (_, http):
        started = await ok(http.post("/v1/deployments/iris", headers=keys.deployer, json={
            "version": ref, "strategy": "canary",
            "options": {"steps": [10, 50, 100], "step_duration_s": "5m"}}), 202)
    assert (started["candidate"], started["weights"], started["steps"]) == (
        "1.0.1", {"1.0.0": 0.9, "1.0.1": 0.1}, [10, 50, 100])
    assert started["options"]["step_duration_s"] == 300.0


async def test_a_version_given_as_an_alias_or_a_stage_as_documented(
        iris_client: Client, keys: Keys) -> None:
    iris_client.registry.set_alias("iris", "challenger", "1.0.1")
    async with deployment_app(iris_client) as (_, http):
        started = await ok(http.post("/v1/deployments/iris", headers=keys.deployer,
                                     json={**CANARY, "version": "challenger"}), 202)
        assert started["candidate"] == "1.0.1"
        await ok(http.post("/v1/deployments/iris/rollout", headers=keys.deployer,
                           json={"action": "abort"}))
        iris_client.transition_stage("iris", "1.0.1", "staging")
        staged = await ok(http.post("/v1/deployments/iris", headers=keys.deployer,
                                    json={**CANARY, "version": "@staging"}), 202)
    assert staged["candidate"] == "1.0.1"


async def test_pause_resume_and_abort(iris_client: Client, keys: Keys) -> None:
    async with deployment_app(iris_client) as (_, http):
        await ok(http.post("/v1/deployments/iris", headers=keys.deployer, json=CANARY), 202)

        async def act(action: str) -> httpx.Response:
            return await http.post("/v1/deployments/iris/rollout", headers=keys.deployer,
                                   json={"action": action})

        paused = await ok(act("pause"))
        assert (paused["state"], paused["weights"]) == ("paused",
                                                        {"1.0.0": 0.95, "1.0.1": 0.05})
        assert_error(await act("step"), 409, "conflict", "is paused; resume it first")
        assert_error(await act("pause"), 409, "conflict", "cannot become paused")
        resumed = await ok(act("resume"))
        assert resumed["state"] == "progressing"
        assert_error(await act("resume"), 409, "conflict", "has no paused rollout")
        aborted = await ok(act("abort"))
        assert (aborted["state"], aborted["candidate"], aborted["weights"]) == (
            "aborted", None, {"1.0.0": 1.0})
        assert_error(await act("abort"), 409, "conflict",
                     "iris has no rollout under way (its deployment is aborted)")
        kinds = [e["kind"] for e in (await ok(http.get("/v1/deployments/iris/events",
                                                       headers=keys.viewer)))["events"]]
    assert kinds == ["deploy", "pause", "resume", "abort"]
    assert stages(iris_client) == {"1.0.0": "production", "1.0.1": "none"}


# --- who may ----------------------------------------------------------------------------


async def test_viewers_read_deployers_change(iris_client: Client, keys: Keys) -> None:
    iris_client.deploy("iris", "1.0.1", strategy="canary")
    before = snapshot(iris_client)
    async with deployment_app(iris_client) as (_, http):
        for method, path, body in WRITES:
            for who, status, code, message in (
                    ({}, 401, "unauthorized", ""),
                    (keys.viewer, 403, "forbidden",
                     "the viewer role does not allow this operation"),
                    (keys.predictor, 403, "forbidden", "the predictor role does not allow")):
                assert_error(await http.request(method, path, headers=who, json=body),
                             status, code, message)
        for path in READS:
            for who in (keys.viewer, keys.deployer):
                response = await http.get(path, headers=who)
                assert response.status_code == 200, (path, response.text)
            assert_error(await http.get(path), 401, "unauthorized", "")
            assert_error(await http.get(path, headers=keys.predictor), 403, "forbidden",
                         "the predictor role does not allow")
    assert snapshot(iris_client) == before
    denied = [e for e in iris_client.audit.list(limit=1000) if e.action == "access.denied"]
    assert len(denied) == 9  # the refused writes, and only those


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/deployments/iris"), ("POST", "/v1/deployments/iris"),
    ("POST", "/v1/deployments/iris/rollout"), ("POST", "/v1/deployments/iris/rollback"),
    ("GET", "/v1/deployments/iris/events"),
])
def test_each_route_needs_its_permission(method: str, path: str) -> None:
    route = Routes().parse(method, path)
    assert (route.action, route.model) == (Action.DEPLOYMENTS, "iris")
    assert set(route.permissions) == ({Permission.READ} if method == "GET"
                                      else {Permission.DEPLOY})


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(("running", "method", "path", "body", "status", "code", "message"), [
    # unknown model or version
    (False, "GET", "/v1/deployments/nope", None, 404, "not_found", "model 'nope' not found"),
    (False, "GET", "/v1/deployments/nope/events", None, 404, "not_found",
     "model 'nope' not found"),
    (False, "POST", "/v1/deployments/nope", CANARY, 404, "not_found",
     "model 'nope' not found"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "version": "9.9.9"}, 404,
     "not_found", "9.9.9"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "version": "@nobody"}, 404,
     "not_found", "nobody"),
    (False, "POST", "/v1/deployments/nope/rollout", {"action": "promote"}, 404, "not_found",
     "model 'nope' not found"),
    (False, "POST", "/v1/deployments/nope/rollback", {}, 404, "not_found",
     "model 'nope' not found"),
    # conflicts
    (True, "POST", "/v1/deployments/iris", {**CANARY, "strategy": "ab"}, 409, "conflict",
     "a canary of iris 1.0.1 is progressing; promote, abort or roll it back first"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "version": "1.0.0"}, 409,
     "conflict", "iris 1.0.0 is already in production"),
    (False, "POST", "/v1/deployments/iris/rollout", {"action": "promote"}, 409, "conflict",
     "iris has no rollout under way (its deployment is idle)"),
    (False, "POST", "/v1/deployments/iris/rollout", {"action": "step"}, 409, "conflict",
     "iris has no rollout under way"),
    (False, "POST", "/v1/deployments/iris/rollback", {}, 409, "conflict",
     "nothing to roll back for 'iris'"),
    # strategies, options and values
    (False, "POST", "/v1/deployments/iris", {**CANARY, "strategy": "linear"}, 422,
     "invalid_input", "unknown strategy 'linear': use one of blue_green, canary, ab, shadow"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "strategy": 3}, 422,
     "invalid_input", "'strategy' must be one of"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "options": {"fraction": 0.1}}, 422,
     "invalid_input", "unknown option 'fraction' for canary (its options: "),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "strategy": "shadow",
                                             "options": {"split": 0.5}}, 422,
     "invalid_input", "unknown option 'split' for shadow"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "options": {"steps": [50, 25]}}, 422,
     "invalid_input", "option 'steps' must be percentages that only grow"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "options": {"max_error_rate": 2}},
     422, "invalid_input", "option 'max_error_rate' must be from 0 to 1"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "options": {
        "step_duration_s": "soon"}}, 422, "invalid_input",
     "option 'step_duration_s' must be a duration"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "strategy": "ab", "options": {
        "split": 1.0}}, 422, "invalid_input", "option 'split' must leave the stable"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "options": [5, 25]}, 422,
     "invalid_input", "'options' must be a JSON object"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "canary": True}, 422,
     "invalid_input", "body.canary: Extra inputs are not permitted"),
    (False, "POST", "/v1/deployments/iris", {"strategy": "canary"}, 422, "invalid_input",
     "body.version: Field required"),
    (False, "POST", "/v1/deployments/iris", {**CANARY, "version": 1}, 422, "invalid_input",
     "body.version: Input should be a valid string"),
    (True, "POST", "/v1/deployments/iris/rollout", {"action": "jump"}, 422,
     "invalid_input", "unknown action 'jump': use one of promote, abort, step, pause, "
     "resume"),
    (True, "POST", "/v1/deployments/iris/rollout", {"reason": "x"}, 422, "invalid_input",
     "body.action: Field required"),
    (True, "POST", "/v1/deployments/iris/rollout", {"action": "promote", "force": True},
     422, "invalid_input", "body.force: Extra inputs are not permitted"),
    (True, "POST", "/v1/deployments/iris/rollback", {"why": "x"}, 422, "invalid_input",
     "body.why: Extra inputs are not permitted"),
    (True, "POST", "/v1/deployments/iris/rollback", {"reason": "x" * 1001}, 422,
     "invalid_input", "body.reason: String should have at most 1000 characters"),
])
async def test_refusals_name_the_problem_and_change_nothing(
        iris_client: Client, keys: Keys, running: bool, method: str, path: str,
        body: Any, status: int, code: str, message: str) -> None:
    if running:
        iris_client.deploy("iris", "1.0.1", strategy="canary")
    before = snapshot(iris_client)
    async with deployment_app(iris_client) as (_, http):
        assert_error(await http.request(method, path, headers=keys.deployer, json=body),
                     status, code, message)
        if method == "POST" and path.startswith("/v1/deployments/iris"):
            shown = await ok(http.get("/v1/deployments/iris", headers=keys.viewer))
            assert shown == before[0]
    assert snapshot(iris_client) == before


async def test_every_bad_option_is_named_at_once(iris_client: Client, keys: Keys) -> None:
    async with deployment_app(iris_client) as (_, http):
        response = await http.post("/v1/deployments/iris", headers=keys.deployer, json={
            **CANARY, "options": {"fraction": 0.1, "min_requests": -1, "steps": []}})
    assert_error(response, 422, "invalid_input", "unknown option 'fraction'")
    text = response.json()["error"]["message"]
    assert "option 'min_requests' must be" in text and "option 'steps' must be" in text
    assert iris_client.rollouts.status("iris").state.value == "idle"


@pytest.mark.parametrize(("content", "status", "message"), [
    (b"{nope", 400, "the body is not valid JSON"),
    (b"[1, 2]", 422, "body: Input should be a valid dictionary"),
])
async def test_a_body_that_is_no_deployment_at_all(iris_client: Client, keys: Keys,
                                                   content: bytes, status: int,
                                                   message: str) -> None:
    before = snapshot(iris_client)
    async with deployment_app(iris_client) as (_, http):
        for path in ("/v1/deployments/iris", "/v1/deployments/iris/rollout",
                     "/v1/deployments/iris/rollback"):
            response = await http.post(path, content=content, headers={
                **keys.deployer, "content-type": "application/json"})
            assert_error(response, status, response.json()["error"]["code"], message)
    assert snapshot(iris_client) == before


async def test_two_deploys_at_once_start_one_rollout(iris_client: Client,
                                                     keys: Keys) -> None:
    async with deployment_app(iris_client) as (_, http):
        answers = await asyncio.gather(*(
            http.post("/v1/deployments/iris", headers=keys.deployer,
                      json={**CANARY, "strategy": strategy})
            for strategy in ("canary", "ab", "shadow")))
    assert sorted(a.status_code for a in answers) == [202, 409, 409]
    [started] = [a.json() for a in answers if a.status_code == 202]
    assert iris_client.rollouts.status("iris").to_dict() == started
    assert [e.kind for e in iris_client.rollouts.events("iris")] == ["deploy"]


async def test_the_server_serves_what_the_deployment_says(iris_client: Client,
                                                         keys: Keys) -> None:
    async with deployment_app(iris_client, reload_interval_s=0.1) as (_, http):

        async def served() -> dict[str, int]:
            """The versions that answer 40 requests of as many routing keys."""
            counts: dict[str, int] = {}
            for i in range(40):
                answer = await http.post("/v1/models/iris/predict", json={
                    "inputs": records(1)}, headers={**keys.predictor,
                                                    "x-routing-key": f"user-{i}"})
                assert answer.status_code == 200, answer.text
                version = answer.headers["x-model-version"]
                counts[version] = counts.get(version, 0) + 1
            return counts

        async def until(versions: set[str]) -> dict[str, int]:
            deadline = time.monotonic() + 15.0
            while set(counts := await served()) != versions and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return counts

        assert set(await served()) == {"1.0.0"}
        await ok(http.post("/v1/deployments/iris", headers=keys.deployer, json={
            **CANARY, "options": {"steps": [50, 100]}}), 202)
        assert set(await until({"1.0.0", "1.0.1"})) == {"1.0.0", "1.0.1"}
        await ok(http.post("/v1/deployments/iris/rollout", headers=keys.deployer,
                           json={"action": "promote"}))
        assert await until({"1.0.1"}) == {"1.0.1": 40}
        await ok(http.post("/v1/deployments/iris/rollback", headers=keys.deployer))
        assert await until({"1.0.0"}) == {"1.0.0": 40}


# --- wiring --------------------------------------------------------------------------------


async def test_the_service_runs_off_the_event_loop(iris_client: Client, keys: Keys) -> None:
    spy = ThreadSpy(iris_client.deployments)
    loop_thread = threading.get_ident()  # the test's loop runs the app's handlers too
    async with deployment_app(iris_client, store=spy) as (_, http):
        await ok(http.get("/v1/deployments/iris", headers=keys.viewer))
        await ok(http.post("/v1/deployments/iris", headers=keys.deployer, json=CANARY), 202)
        await ok(http.post("/v1/deployments/iris/rollout", headers=keys.deployer,
                           json={"action": "step"}))
        await ok(http.post("/v1/deployments/iris/rollback", headers=keys.deployer, json={}))
        await ok(http.get("/v1/deployments/iris/events", headers=keys.viewer))
    calls = [call for call, _ in spy.threads]
    assert {"get", "get_with_facts", "change", "events"} <= set(calls), calls
    assert all(thread != loop_thread for _, thread in spy.threads), spy.threads


async def test_without_a_deployment_store_every_route_says_so(iris_client: Client,
                                                              keys: Keys) -> None:
    async with deployment_app(iris_client, with_store=False) as (_, http):
        for method, path, body in (("GET", "/v1/deployments/iris", None),
                                   ("GET", "/v1/deployments/iris/events", None), *WRITES):
            who = keys.viewer if method == "GET" else keys.deployer
            assert_error(await http.request(method, path, headers=who, json=body), 404,
                         "not_found", "deployments are not available on this server")
        assert_error(await http.post("/v1/deployments/iris", headers=keys.viewer,
                                     json=CANARY), 403, "forbidden", "")
    assert iris_client.rollouts.events("iris") == []


async def test_the_routes_are_documented(iris_client: Client, keys: Keys) -> None:
    async with deployment_app(iris_client) as (_, http):
        schema = await ok(http.get("/openapi.json", headers=keys.viewer))
    paths = schema["paths"]
    documented: dict[str, Callable[[str], bool]] = {
        "/v1/deployments/{name}": lambda m: m in ("get", "post"),
        "/v1/deployments/{name}/rollout": lambda m: m == "post",
        "/v1/deployments/{name}/rollback": lambda m: m == "post",
        "/v1/deployments/{name}/events": lambda m: m == "get",
    }
    for path, allowed in documented.items():
        assert path in paths, sorted(paths)
        assert all(allowed(m) for m in paths[path]), (path, list(paths[path]))
        for operation in paths[path].values():
            assert operation["tags"] == ["deployments"]
            assert operation.get("description"), (path, operation)
    assert "202" in paths["/v1/deployments/{name}"]["post"]["responses"]
    body = paths["/v1/deployments/{name}"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/DeployRequest"}
    fields = schema["components"]["schemas"]["DeployRequest"]["properties"]
    assert set(fields) == {"version", "strategy", "options"}


# --- what the rollout service and the registry keep consistent between them --------------


async def test_production_changes_through_its_rollout_while_one_runs(
        iris_client: Client, keys: Keys) -> None:
    async with deployment_app(iris_client) as (_, http):
        await ok(http.post("/v1/deployments/iris", headers=keys.deployer, json=CANARY), 202)
        await ok(http.post("/v1/models/iris/versions/1.0.1/stage", headers=keys.deployer,
                           json={"stage": "staging"}))
        for version in ("1.0.1", "1.0.0"):  # into production, and out of it
            target = "production" if version == "1.0.1" else "archived"
            refused = await http.post(f"/v1/models/iris/versions/{version}/stage",
                                      headers=keys.deployer, json={"stage": target})
            assert_error(refused, 409, "conflict", "a canary of iris 1.0.1 is progressing")
        shown = await ok(http.get("/v1/deployments/iris", headers=keys.viewer))
    assert shown["weights"] == {"1.0.0": 0.95, "1.0.1": 0.05}
    assert sum(shown["weights"].values()) == pytest.approx(1.0), shown


async def test_the_conflict_message_of_a_running_ab_test(iris_client: Client,
                                                         keys: Keys) -> None:
    iris_client.deploy("iris", "1.0.1", strategy="ab")
    async with deployment_app(iris_client) as (_, http):
        response = await http.post("/v1/deployments/iris", headers=keys.deployer,
                                   json=CANARY)
    assert_error(response, 409, "conflict", "an A/B test of iris 1.0.1 is progressing")

"""The web console's pages through the real app, in-process (httpx over ASGI): signing in
with an API key (a session cookie that holds no secret, failed attempts audited, no open
redirect), every page for an admin over a populated registry, the roles (a viewer sees
and may do nothing; a deployer's actions need the session's CSRF token and are audited
under their key), hostile text escaped on every page that shows it, errors as the
console's own page with the service's status and never a trace, the content security
policy, and the CSRF cookie with auth off."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import text
from tests.conftest import TODAY
from tests.fixtures_models import iris

from modelhost import Client
from modelhost.security.keys import hash_secret
from modelhost.serving import ModelhostApp, MonitorOptions, PoolOptions, ServerOptions, create_app

pytestmark = pytest.mark.anyio

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = (SCRIPT, IMG)
TRACE = ("Traceback", 'File "')
SESSION = "modelhost_session"
CSRF_COOKIE = "modelhost_csrf"
BASE = "http://testserver"


@dataclass(frozen=True)
class Site:
    client: Client
    secrets: dict[str, str]  # role -> the key's secret
    actors: dict[str, str]  # role -> the audit log's actor of the key
    ids: dict[str, str]  # role -> key id
    runs: tuple[str, str]  # the ids of two runs of one experiment


@pytest.fixture
def site(iris_client: Client, tmp_path: Path) -> Site:
    """iris 1.0.0 in production and 1.0.1 registered (tagged with hostile text), a model
    description and tags of hostile text, two runs of ``iris-tuning`` with params and a
    metric history (named and parametrised with hostile text), a dataset, and a key of
    each role (and one whose name is hostile)."""
    client = iris_client
    client.registry.set_tags("iris", {"team": "fraud", "note": SCRIPT, SCRIPT: IMG})
    client.registry.set_tags("iris", {"v-note": IMG, SCRIPT: "x"}, version="1.0.1")
    # No API sets a model's description (an imported archive could bring any text).
    with client.db.engine.begin() as conn:
        conn.execute(text("UPDATE models SET description = :d WHERE name = 'iris'"),
                     {"d": f"Iris {SCRIPT} {IMG}"})
    run_ids = []
    for name, c in ((SCRIPT, "1.0"), (IMG, "0.1")):
        with client.tracking.start_run("iris-tuning", name=name,
                                       params={"C": c, SCRIPT: IMG},
                                       tags={"why": IMG}) as run:
            for step in range(5):
                run.log_metric("loss", float(c) / (step + 1), step=step)
            run.log_metric(SCRIPT, 0.5)
            run_ids.append(run.run_id)
    X, y = iris()
    X.assign(target=y).to_csv(tmp_path / "iris.csv", index=False)
    client.datasets.add(tmp_path / "iris.csv", name="iris-train")

    secrets, actors, ids = {}, {}, {}
    for role, name in (("admin", "boss"), ("deployer", "ci-deploy"), ("viewer", "look"),
                       ("predictor", "scorer"), ("hostile", SCRIPT)):
        created = client.keys.create(name=name, role="viewer" if role == "hostile" else role)
        secrets[role], ids[role] = created.secret, created.key.id
        actors[role] = f"key:{created.key.id} ({name})"
    return Site(client, secrets, actors, ids, (run_ids[0], run_ids[1]))


@asynccontextmanager
async def console_app(client: Client, *, auth: bool = True) -> AsyncIterator[ModelhostApp]:
    """The app as ``modelhost serve`` wires it (keys, audit, deployments, monitoring,
    runs and datasets), no background loop."""
    app = create_app(client.registry, options=ServerOptions(
        auth=auth, pool=PoolOptions(reload_interval_s=3600.0),
        monitor=MonitorOptions(flush_s=3600.0)),
        keys=client.keys, audit=client.audit, predictions=client.predictions,
        profiles=client.profiles, alerts=client.alert_store, deployments=client.deployments,
        runs=client.run_store, datasets=client.dataset_store, today=lambda: TODAY)
    async with app.running():
        yield app


class Browser:
    """One browser (its own cookie jar) on the app."""

    def __init__(self, app: ModelhostApp, stack: AsyncExitStack) -> None:
        self._app, self._stack = app, stack
        self.http: httpx.AsyncClient

    async def open(self) -> Browser:
        self.http = await self._stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._app), base_url=BASE))
        return self

    async def sign_in(self, secret: str, next: str = "") -> httpx.Response:
        return await self.http.post("/ui/login", data={"key": secret, "next": next})

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(url, **kwargs)

    async def post(self, url: str, data: dict[str, str]) -> httpx.Response:
        return await self.http.post(url, data=data)

    async def csrf(self, page: str = "/ui/models") -> str:
        """The CSRF token the forms of a page carry."""
        shown = await self.get(page)
        assert shown.status_code == 200, shown.text
        found = re.search(r'name="csrf" value="([^"]+)"', shown.text)
        assert found is not None, shown.text
        return found.group(1)


@asynccontextmanager
async def browsers(client: Client, *roles: str, site: Site | None = None,
                   auth: bool = True) -> AsyncIterator[tuple[Browser, ...]]:
    """A running app and one browser per role, signed in with that role's key ('' for
    one not signed in)."""
    async with console_app(client, auth=auth) as app, AsyncExitStack() as stack:
        opened = []
        for role in roles:
            browser = await Browser(app, stack).open()
            if role:
                assert site is not None
                signed = await browser.sign_in(site.secrets[role])
                assert signed.status_code == 303, signed.text
            opened.append(browser)
        yield tuple(opened)


def assert_page(response: httpx.Response, status: int = 200) -> str:
    """A console page: HTML with the status, the console's policy, no trace."""
    assert response.status_code == status, (response.url, response.status_code,
                                            response.text[:2000])
    assert response.headers["content-type"].startswith("text/html")
    assert_policy(response)
    assert_no_trace(response)
    return response.text


def assert_policy(response: httpx.Response) -> None:
    policy = response.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in policy.split(";") if d.strip()}
    assert directives.get("script-src") == "script-src 'self'", (response.url, policy)
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def assert_no_trace(response: httpx.Response) -> None:
    for marker in TRACE:
        assert marker not in response.text, (response.url, response.text[:2000])


def assert_error_page(response: httpx.Response, status: int, message: str = "") -> str:
    body = assert_page(response, status)
    assert 'id="error"' in body
    assert message in body, body
    return body


def deployment_state(client: Client) -> tuple[Any, ...]:
    """What a refused action must leave as it was."""
    return (client.rollouts.status("iris").to_dict(),
            {v.version: v.stage.value for v in client.registry.list_versions("iris")},
            len(client.rollouts.events("iris")),
            [(e.action, e.target) for e in client.audit.list(limit=1000)
             if e.action.startswith(("deployment.", "model."))])


# --- signing in ------------------------------------------------------------------------


async def test_pages_need_a_session_and_keep_where_they_were_going(site: Site) -> None:
    async with browsers(site.client, "") as (anon,):
        for page in ("/ui/models", "/ui/models/iris?version=1.0.1", "/ui/audit",
                     "/ui/deployments/iris/live", "/ui/no/such/page"):
            answer = await anon.get(page)
            assert answer.status_code == 303, (page, answer.text)
            assert answer.headers["location"] == f"/ui/login?next={quote(page, safe='')}"
            assert_policy(answer)
        form = assert_page(await anon.get("/ui/login?next=" + quote("/ui/models/iris?version=1.0.1",
                                                                    safe="")))
        assert 'name="next" value="/ui/models/iris?version=1.0.1"' in form
        assert 'id="login"' in form
        # htmx polls get no page: the whole window goes to the login page.
        polled = await anon.get("/ui/deployments/iris/live", headers={"HX-Request": "true"})
        assert polled.status_code == 204 and polled.text == ""
        assert polled.headers["hx-redirect"] == (
            "/ui/login?next=" + quote("/ui/deployments/iris/live", safe=""))
        # Posts too: nothing happens without a session.
        before = deployment_state(site.client)
        posted = await anon.post("/ui/deployments/iris/action",
                                 {"csrf": "x", "action": "rollback"})
        assert posted.status_code == 303 and posted.headers["location"].startswith(
            "/ui/login?next=")
        assert deployment_state(site.client) == before
        # A forged or garbage cookie is no session.
        anon.http.cookies.set(SESSION, f"{site.ids['admin']}.99999999999.{'a' * 64}",
                              domain="testserver", path="/ui")
        assert (await anon.get("/ui/models")).status_code == 303
        # After signing in, the page it was going to.
        signed = await anon.sign_in(site.secrets["viewer"], "/ui/models/iris?version=1.0.1")
        assert signed.status_code == 303
        assert signed.headers["location"] == "/ui/models/iris?version=1.0.1"
        assert_page(await anon.get(signed.headers["location"]))


async def test_a_bad_key_is_refused_and_audited(site: Site) -> None:
    wrong = site.secrets["admin"][:-2] + ("xx" if not site.secrets["admin"].endswith("xx")
                                          else "yy")
    async with browsers(site.client, "") as (anon,):
        for attempt in (wrong, "mh_000000000000_" + "x" * 43, "not a key", ""):
            refused = await anon.sign_in(attempt, "/ui/keys")
            body = assert_page(refused, 401)
            assert 'id="login-error"' in body and "not valid" in body
            assert 'name="next" value="/ui/keys"' in body  # kept for the next try
            assert SESSION not in refused.headers.get("set-cookie", "")
            if attempt:
                assert attempt not in body  # the key is not echoed back
        assert SESSION not in anon.http.cookies
        assert (await anon.get("/ui/models")).status_code == 303
    denied = [e for e in site.client.audit.list(limit=100) if e.action == "access.denied"]
    assert len(denied) == 4
    assert {e.target for e in denied} == {"POST /ui/login"}
    assert all(e.actor.startswith("anonymous@") for e in denied)
    dump = " ".join(str(e.to_dict()) for e in site.client.audit.list(limit=100))
    assert wrong not in dump
    assert not any(e.action == "console.sign_in" for e in site.client.audit.list(limit=100))


async def test_a_predictor_key_cannot_sign_in(site: Site) -> None:
    async with browsers(site.client, "") as (anon,):
        refused = await anon.sign_in(site.secrets["predictor"])
        body = assert_page(refused, 401)
        assert 'id="login-error"' in body and "viewer, deployer or admin" in body
        assert SESSION not in refused.headers.get("set-cookie", "")
        assert SESSION not in anon.http.cookies
        assert (await anon.get("/ui/models")).status_code == 303
    denied = [e for e in site.client.audit.list(limit=100) if e.action == "access.denied"]
    assert len(denied) == 1 and denied[0].target == "POST /ui/login"


async def test_signing_in_sets_a_strict_httponly_cookie_without_a_secret(site: Site) -> None:
    async with browsers(site.client, "") as (anon,):
        signed = await anon.sign_in(site.secrets["viewer"])
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/models"
        cookies = signed.headers.get_list("set-cookie")
        assert len(cookies) == 1
        cookie = cookies[0]
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")}
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "samesite=strict"
        assert attributes["path"] == "Path=/ui"
        assert "expires" in attributes
        token = cookie.split(";")[0].split("=", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{12}\.[0-9]+\.[0-9a-f]{64}", token), token
        assert token.startswith(site.ids["viewer"] + ".")
        secret = site.secrets["viewer"]
        for hidden in (secret, secret.split("_", 2)[2], hash_secret(secret)):
            assert hidden not in cookie and hidden[:12] not in token
        page = assert_page(await anon.get("/ui/models"))
        assert secret not in page and token not in page
        assert 'id="who">look · viewer' in page
    signed_in = [e for e in site.client.audit.list(limit=100)
                 if e.action == "console.sign_in"]
    assert [(e.actor, e.target) for e in signed_in] == [
        (site.actors["viewer"], site.ids["viewer"])]


async def test_a_revoked_keys_session_goes_back_to_the_login_page(site: Site) -> None:
    async with browsers(site.client, "viewer", "admin", site=site) as (viewer, admin):
        assert_page(await viewer.get("/ui/models"))
        site.client.keys.revoke(site.ids["viewer"])
        gone = await viewer.get("/ui/models/iris")
        assert gone.status_code == 303
        assert gone.headers["location"] == "/ui/login?next=" + quote("/ui/models/iris", safe="")
        assert (await viewer.sign_in(site.secrets["viewer"])).status_code == 401
        assert_page(await admin.get("/ui/models"))  # other keys' sessions go on


async def test_an_admin_revokes_a_key_from_the_keys_page(site: Site) -> None:
    async with browsers(site.client, "admin", "deployer", "viewer", site=site) as (
            admin, deployer, viewer):
        target = f"/ui/keys/{site.ids['viewer']}/revoke"
        for who in (deployer, viewer):  # not admins: refused, even with their own token
            refused = await who.post(target, {"csrf": await who.csrf()})
            assert_error_page(refused, 403)
        assert_error_page(await admin.post(target, {}), 403)
        assert_error_page(await admin.post(target, {"csrf": await deployer.csrf()}), 403)
        assert site.ids["viewer"] in {k.id for k in site.client.keys.list()}
        done = await admin.post(target, {"csrf": await admin.csrf("/ui/keys")})
        assert done.status_code == 303 and done.headers["location"] == "/ui/keys"
        assert site.ids["viewer"] not in {k.id for k in site.client.keys.list()}
        assert (await viewer.get("/ui/models")).status_code == 303
        # Audited once, as DELETE /v1/keys/{id} does, under the admin's key.
        revocations = [(e.target, e.actor) for e in site.client.audit.list(limit=100)
                       if e.action == "key.revoke"]
        assert revocations == [(f"key:{site.ids['viewer']}", site.actors["admin"])]
        keys_page = assert_page(await admin.get("/ui/keys"))
        assert f'id="revoke-{site.ids["viewer"]}"' not in keys_page


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil", "//evil.example/ui/models", "/\\evil.example",
    "https:/ui/models", "http://testserver/ui/keys", "javascript:alert(1)", "/docs",
    "/ui", "ui/models", "\\\\evil.example",
])
async def test_no_open_redirect_after_signing_in(site: Site, target: str) -> None:
    async with browsers(site.client, "") as (anon,):
        signed = await anon.sign_in(site.secrets["viewer"], target)
        assert signed.status_code == 303
        assert signed.headers["location"] == "/ui/models"
        form = assert_page(await anon.get("/ui/login", params={"next": target}))
        assert 'name="next" value="/ui/models"' in form


# --- every page ------------------------------------------------------------------------


async def test_every_page_answers_an_admin(site: Site) -> None:
    site.client.deploy("iris", "1.0.1", strategy="canary")
    one, two = site.runs
    pages = {
        "/ui/models": "models", "/ui/models/iris": "versions",
        "/ui/models/iris?version=1.0.1": "version-detail",
        "/ui/models/iris/compare?a=1.0.0&b=1.0.1": "metric-diff",
        "/ui/deployments/iris": "actions", "/ui/deployments/iris/live": "live",
        "/ui/monitoring/iris": "report", "/ui/monitoring/iris?version=1.0.1&window=1h": "alerts",
        "/ui/monitoring/iris?window=24h": "report", "/ui/monitoring/iris?window=7d": "report",
        "/ui/monitoring/iris?window=30d": "report", "/ui/runs": "runs",
        "/ui/runs?experiment=iris-tuning": "runs", f"/ui/runs/compare?run={one}&run={two}":
        "metric-charts", "/ui/audit": "chain", "/ui/keys": "keys", "/ui/login": "login",
    }
    async with browsers(site.client, "admin", site=site) as (admin,):
        for page, element in pages.items():
            body = assert_page(await admin.get(page))
            assert f'id="{element}"' in body, (page, body[:3000])
        home = await admin.get("/ui")
        assert home.status_code == 303 and home.headers["location"] == "/ui/models"
        for name, media in (("htmx.min.js", "text/javascript"), ("console.js", "text/javascript"),
                            ("console.css", "text/css"), ("report.css", "text/css")):
            asset = await admin.get(f"/ui/static/{name}")
            assert asset.status_code == 200 and asset.content, name
            assert asset.headers["content-type"].startswith(media), name
            assert_policy(asset)
        # What the pages show, in a few places.
        model = assert_page(await admin.get("/ui/models/iris?version=1.0.1"))
        assert 'class="chosen"' in model and "1.0.0" in model and "1.0.1" in model
        # The model card's sections as HTML (escaped by the card's own renderer).
        assert '<div class="card-html"><h3>Overview</h3>' in model
        assert '<table class="data narrow"><thead><tr><th>Field</th>' in model
        runs = assert_page(await admin.get("/ui/runs"))
        assert one in runs and two in runs and "iris-tuning" in runs and "iris-train" in runs
        chart = assert_page(await admin.get(f"/ui/runs/compare?run={one}&run={two}"))
        assert chart.count("<circle") >= 10  # five steps of loss per run
        deployment = assert_page(await admin.get("/ui/deployments/iris"))
        assert 'id="candidate">1.0.1' in deployment and 'id="action-rollback"' in deployment
        keys = assert_page(await admin.get("/ui/keys"))
        assert all(site.ids[role] in keys for role in site.ids)
        # The audit page loads the chain's verification afterwards, as a fragment.
        verified = assert_page(await admin.get("/ui/audit/verify"))
        assert 'data-verified="ok"' in verified and "The hash chain verifies" in verified
        assert all(s not in keys for s in site.secrets.values())


# --- roles and actions -----------------------------------------------------------------


async def test_a_viewer_sees_and_may_do_nothing(site: Site) -> None:
    site.client.deploy("iris", "1.0.1", strategy="canary")
    async with browsers(site.client, "viewer", site=site) as (viewer,):
        page = assert_page(await viewer.get("/ui/deployments/iris"))
        assert 'id="candidate">1.0.1' in page
        assert 'id="action-rollback"' not in page and 'id="actions"' not in page
        assert 'name="action"' not in page
        for admin_page in ("/ui/audit", "/ui/keys"):
            assert_error_page(await viewer.get(admin_page), 403)
        models = assert_page(await viewer.get("/ui/models"))
        assert 'href="/ui/audit"' not in models and 'href="/ui/keys"' not in models
        before = deployment_state(site.client)
        token = await viewer.csrf("/ui/deployments/iris")  # a valid token of their own
        for action in ("rollback", "promote", "abort", "step", "pause"):
            refused = await viewer.post("/ui/deployments/iris/action",
                                        {"csrf": token, "action": action, "reason": "x"})
            assert_error_page(refused, 403, "viewer role")
        assert deployment_state(site.client) == before


@pytest.mark.parametrize("form", [
    {"action": "rollback"},
    {"action": "rollback", "csrf": ""},
    {"action": "rollback", "csrf": "x" * 64},
    {"action": "rollback", "csrf": "{token}x"},
    {"action": "rollback", "csrf": "{token_upper}"},
    {"action": "rollback", "csrf": "{admin_token}"},  # another session's token
    {"action": "rollback", "csrf": "{session}"},  # the session cookie is no CSRF token
    {"action": "promote", "csrf": "{hostile_token}"},
])
async def test_a_deployer_needs_the_sessions_csrf_token(site: Site, form: dict[str, str]) -> None:
    site.client.deploy("iris", "1.0.1", strategy="canary")
    async with browsers(site.client, "deployer", "admin", "hostile", site=site) as (
            deployer, admin, hostile):
        token = await deployer.csrf("/ui/deployments/iris")
        values = {"token": token, "token_upper": token.upper(),
                  "admin_token": await admin.csrf(),
                  "hostile_token": await hostile.csrf(),
                  "session": deployer.http.cookies[SESSION]}
        before = deployment_state(site.client)
        refused = await deployer.post("/ui/deployments/iris/action",
                                      {k: v.format(**values) for k, v in form.items()})
        assert_error_page(refused, 403, "security token")
        assert deployment_state(site.client) == before
        assert_page(await deployer.get("/ui/deployments/iris"))  # still signed in


async def test_a_deployer_rolls_back_production(site: Site) -> None:
    client = site.client
    client.deploy("iris", "1.0.1", strategy="blue_green")
    assert client.registry.get_model("iris").production_version == "1.0.1"
    async with console_app(client) as app, AsyncExitStack() as stack:
        deployer = await Browser(app, stack).open()
        assert (await deployer.sign_in(site.secrets["deployer"])).status_code == 303
        page = assert_page(await deployer.get("/ui/deployments/iris"))
        assert 'id="stable">1.0.1' in page and 'id="action-rollback"' in page
        token = await deployer.csrf("/ui/deployments/iris")
        done = await deployer.post("/ui/deployments/iris/action", {
            "csrf": token, "action": "rollback", "reason": f"users complain {SCRIPT}"})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/ui/deployments/iris"
        after = assert_page(await deployer.get(done.headers["location"]))
        assert 'id="stable">1.0.0' in after
        assert SCRIPT not in after and str(escape(f"users complain {SCRIPT}")) in after
        api = await stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE))
        shown = await api.get("/v1/deployments/iris",
                              headers={"authorization": f"Bearer {site.secrets['viewer']}"})
        assert shown.status_code == 200, shown.text
        assert (shown.json()["state"], shown.json()["stable"], shown.json()["weights"]) == (
            "rolled_back", "1.0.0", {"1.0.0": 1.0})
    assert client.registry.get_model("iris").production_version == "1.0.0"
    event = client.rollouts.events("iris")[-1]
    assert (event.kind, event.from_version, event.to_version, event.actor) == (
        "rollback", "1.0.1", "1.0.0", site.actors["deployer"])
    audited = [e for e in client.audit.list(limit=100) if e.action == "deployment.rollback"]
    assert len(audited) == 1 and audited[0].actor == site.actors["deployer"]
    assert site.secrets["deployer"] not in str(audited[0].to_dict())


async def test_an_action_the_deployment_refuses_is_an_error_page(site: Site) -> None:
    async with browsers(site.client, "deployer", site=site) as (deployer,):
        token = await deployer.csrf("/ui/deployments/iris")
        before = deployment_state(site.client)
        nothing = await deployer.post("/ui/deployments/iris/action",
                                      {"csrf": token, "action": "rollback"})
        assert_error_page(nothing, 409, "nothing to roll back")
        idle = await deployer.post("/ui/deployments/iris/action",
                                   {"csrf": token, "action": "promote"})
        assert_error_page(idle, 409, "no rollout under way")
        unknown = await deployer.post("/ui/deployments/iris/action",
                                      {"csrf": token, "action": "delete"})
        assert_error_page(unknown, 422, "unknown action")
        missing = await deployer.post("/ui/deployments/nope/action",
                                      {"csrf": token, "action": "rollback"})
        assert_error_page(missing, 404)
        assert deployment_state(site.client) == before


async def test_signing_out_needs_the_token_and_ends_the_cookie(site: Site) -> None:
    async with browsers(site.client, "viewer", site=site) as (viewer,):
        assert_error_page(await viewer.post("/ui/logout", {}), 403)
        assert_page(await viewer.get("/ui/models"))
        out = await viewer.post("/ui/logout", {"csrf": await viewer.csrf()})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert SESSION not in viewer.http.cookies
        assert (await viewer.get("/ui/models")).status_code == 303


# --- hostile text ----------------------------------------------------------------------


async def test_hostile_text_is_escaped_on_every_page(site: Site) -> None:
    site.client.deploy("iris", "1.0.1", strategy="canary")
    one, two = site.runs
    escaped = {text: str(escape(text)) for text in HOSTILE}
    # page -> the hostile texts it shows (each must be there, escaped)
    pages = {
        "/ui/models": HOSTILE,  # the description
        "/ui/models/iris": HOSTILE,  # description and model tags
        "/ui/models/iris?version=1.0.1": HOSTILE,  # and the version's tags in its card
        "/ui/models/iris/compare?a=1.0.0&b=1.0.1": (),
        "/ui/deployments/iris": (), "/ui/deployments/iris/live": (),
        "/ui/monitoring/iris?window=1h": (),
        "/ui/runs": HOSTILE,  # run names, a param's name, a metric's name
        "/ui/runs?experiment=iris-tuning": HOSTILE,
        f"/ui/runs/compare?run={one}&run={two}": HOSTILE,  # names, params, metrics
        "/ui/audit": (SCRIPT,),  # the hostile key's sign-in, by its name
        "/ui/keys": (SCRIPT,),  # a key's name
    }
    async with browsers(site.client, "admin", "hostile", site=site) as (admin, hostile):
        token = await admin.csrf("/ui/deployments/iris")
        paused = await admin.post("/ui/deployments/iris/action",
                                  {"csrf": token, "action": "pause", "reason": IMG})
        assert paused.status_code == 303, paused.text
        pages["/ui/deployments/iris"] = (IMG,)  # the action's reason
        for page, shown in pages.items():
            body = assert_page(await admin.get(page))
            for raw in HOSTILE:
                assert raw not in body, (page, raw)
            assert "<script>" not in body.replace(
                '<script src="/ui/static/htmx.min.js" defer></script>', "").replace(
                '<script src="/ui/static/console.js" defer></script>', ""), page
            assert "<img" not in body, page
            for raw in shown:
                assert escaped[raw] in body, (page, raw)
        # The hostile key's own pages: its name in the header, escaped.
        own = assert_page(await hostile.get("/ui/models"))
        assert SCRIPT not in own and escaped[SCRIPT] in own
        # In the login form's next field too.
        form = assert_page(await hostile.get("/ui/login", params={"next": f"/ui/x{IMG}"}))
        assert IMG not in form and escaped[IMG] in form


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("page", "status", "message"), [
    ("/ui/models/nope", 404, "nope"),
    ("/ui/models/iris?version=9.9.9", 404, "9.9.9"),
    ("/ui/models/iris?version=@nobody", 404, ""),
    ("/ui/models/iris/compare?a=1.0.0&b=9.9.9", 404, "9.9.9"),
    ("/ui/models/iris/compare?a=7.7.7&b=1.0.0", 404, "7.7.7"),
    ("/ui/models/iris/compare?a=1.0.0", 422, "two versions"),
    ("/ui/models/nope/compare?a=1.0.0&b=1.0.1", 404, ""),
    ("/ui/deployments/nope", 404, "nope"),
    ("/ui/deployments/nope/live", 404, "nope"),
    ("/ui/monitoring/iris?window=2h", 422, "unknown window"),
    ("/ui/monitoring/iris?window=", 422, "unknown window"),
    ("/ui/monitoring/iris?version=9.9.9", 404, "9.9.9"),
    ("/ui/monitoring/nope", 404, "nope"),
    ("/ui/runs/compare?run=x", 422, "at least two"),
    ("/ui/runs/compare?run=" + "0" * 32 + "&run=" + "1" * 32, 404, ""),
    ("/ui/nowhere", 404, "no console page"),
    ("/ui/models/iris/extra/parts", 404, "no console page"),
    ("/ui/static", 404, ""),
])
async def test_errors_are_console_pages_without_a_trace(site: Site, page: str, status: int,
                                                        message: str) -> None:
    async with browsers(site.client, "admin", site=site) as (admin,):
        body = assert_error_page(await admin.get(page), status, message)
        assert 'href="/ui/models"' in body


async def test_hostile_names_in_urls_come_back_escaped(site: Site) -> None:
    async with browsers(site.client, "admin", site=site) as (admin,):
        for page in (f"/ui/models/iris?version={quote(SCRIPT)}",
                     f"/ui/models/iris/compare?a=1.0.0&b={quote(IMG)}",
                     f"/ui/monitoring/iris?window={quote(SCRIPT)}",
                     f"/ui/runs?experiment={quote(IMG)}",
                     f"/ui/models/{quote(SCRIPT, safe='')}"):
            answer = await admin.get(page)
            assert answer.status_code in (200, 404, 422), (page, answer.status_code)
            body = assert_page(answer, answer.status_code)
            assert SCRIPT not in body and IMG not in body, page


# --- auth off --------------------------------------------------------------------------


async def test_with_auth_off_forms_need_the_csrf_cookie_and_field(site: Site) -> None:
    client = site.client
    client.deploy("iris", "1.0.1", strategy="canary")
    async with console_app(client, auth=False) as app, AsyncExitStack() as stack:
        local = await Browser(app, stack).open()
        other = await Browser(app, stack).open()
        first = await local.get("/ui/models")
        body = assert_page(first)
        assert 'id="who">local' in body
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{CSRF_COOKIE}=") and "httponly" in cookie.lower()
        assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
        token = local.http.cookies[CSRF_COOKIE]
        assert len(token) == 43
        again = await local.get("/ui/deployments/iris")
        assert "set-cookie" not in again.headers  # the same token from now on
        assert f'name="csrf" value="{token}"' in assert_page(again)
        assert 'id="action-rollback"' in again.text

        before = deployment_state(client)
        action = "/ui/deployments/iris/action"
        assert_error_page(await other.post(action, {"action": "rollback", "csrf": token}),
                          403)  # the field without the cookie
        assert_error_page(await local.post(action, {"action": "rollback"}), 403)  # no field
        assert_error_page(await local.post(action, {"action": "rollback", "csrf": ""}), 403)
        assert_error_page(await local.post(action, {"action": "rollback",
                                                    "csrf": token[:-1] + "A"
                                                    if token[-1] != "A" else token[:-1] + "B"}),
                          403)
        other.http.cookies.set(CSRF_COOKIE, "short", domain="testserver", path="/ui")
        assert_error_page(await other.post(action, {"action": "rollback", "csrf": "short"}),
                          403)  # not a token this server made
        assert deployment_state(client) == before

        done = await local.post(action, {"action": "rollback", "csrf": token,
                                         "reason": "from the test"})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/ui/deployments/iris"
    assert client.rollouts.status("iris").state.value == "rolled_back"
    assert client.rollouts.events("iris")[-1].kind == "rollback"


async def test_with_auth_off_there_is_no_login(site: Site) -> None:
    async with console_app(site.client, auth=False) as app, AsyncExitStack() as stack:
        local = await Browser(app, stack).open()
        page = await local.get("/ui/login?next=/ui/runs")
        assert page.status_code == 303 and page.headers["location"] == "/ui/runs"
        evil = await local.get("/ui/login?next=//evil.example")
        assert evil.headers["location"] == "/ui/models"
        assert_page(await local.get("/ui/audit"))
        assert_page(await local.get("/ui/keys"))


async def test_a_model_page_shows_its_newest_versions_and_opens_any(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelhost.serving.console import pages

    monkeypatch.setattr(pages, "_VERSIONS_SHOWN", 1)
    async with browsers(site.client, "viewer", site=site) as (viewer,):
        newest = assert_page(await viewer.get("/ui/models/iris"))
        assert 'id="more-versions"' in newest and "?version=1.0.1" in newest
        assert "?version=1.0.0\"" not in newest
        every = assert_page(await viewer.get("/ui/models/iris?all=1"))
        assert 'id="more-versions"' not in every and "?version=1.0.0\"" in every
        # A version older than the window, or an alias, still opens.
        older = assert_page(await viewer.get("/ui/models/iris?version=1.0.0"))
        assert 'id="version-detail">Version 1.0.0' in older and 'id="more-versions"' in older
        latest = assert_page(await viewer.get("/ui/models/iris?version=latest"))
        assert 'id="version-detail">Version 1.0.1' in latest
        assert_error_page(await viewer.get("/ui/models/iris?version=9.9.9"), 404, "9.9.9")


@pytest.mark.parametrize("headers", [
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},  # another port of this host: another origin
    {"origin": "http://localhost:3000"},
    {"origin": "null"},
    {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
])
async def test_a_form_posted_from_another_site_changes_nothing(
        site: Site, headers: dict[str, str]) -> None:
    site.client.deploy("iris", "1.0.1", strategy="canary")
    async with browsers(site.client, "deployer", site=site) as (deployer,):
        token = await deployer.csrf("/ui/deployments/iris")
        before = deployment_state(site.client)
        refused = await deployer.http.post("/ui/deployments/iris/action", headers=headers,
                                           data={"csrf": token, "action": "rollback"})
        assert_error_page(refused, 403, "another site")
        assert deployment_state(site.client) == before
        # The same form from this server's own page goes through.
        same = {"sec-fetch-site": "same-origin", "origin": BASE}
        done = await deployer.http.post("/ui/deployments/iris/action", headers=same,
                                        data={"csrf": token, "action": "rollback"})
        assert done.status_code == 303, done.text
        # Nor may another site sign a browser in (with its own key).
        login = await deployer.http.post("/ui/login", headers=headers,
                                         data={"key": site.secrets["viewer"]})
        assert_error_page(login, 403, "another site")


async def test_a_token_in_any_script_is_refused_not_a_server_error(site: Site) -> None:
    site.client.deploy("iris", "1.0.1", strategy="canary")
    async with browsers(site.client, "deployer", site=site) as (deployer,):
        before = deployment_state(site.client)
        for token in ("é", "€" * 64, "\u0000"):
            refused = await deployer.post("/ui/deployments/iris/action",
                                          {"csrf": token, "action": "rollback"})
            assert_error_page(refused, 403, "security token")
        assert deployment_state(site.client) == before


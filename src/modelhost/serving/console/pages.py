"""The console's routes under ``/ui``: server-rendered pages (Jinja2, autoescaped), a few
fragments that htmx polls, and the form posts of its actions.

Who is asking: with auth on, a signed session cookie (:mod:`modelhost.security.sessions`),
made at ``/ui/login`` from an API key; the ASGI front lets ``/ui`` through without a key
and every page checks the session itself, with the role the matching API route needs.
With auth off (loopback) everyone may do everything, as on the API.

Every form post carries a CSRF token: the session's (auth on), or the random one of a
``SameSite=Strict`` cookie it must match (auth off). A post without it changes nothing
(403). Actions call the same services as the API routes, which write the audit log under
the signed-in key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelhost._actor import acting_as, set_actor
from modelhost.errors import (
    ForbiddenError,
    InvalidInputError,
    ModelhostError,
    NotFoundError,
    UnauthorizedError,
    VersionNotFoundError,
)
from modelhost.monitoring.alerts import AlertService
from modelhost.monitoring.drift import DriftService
from modelhost.monitoring.report import build_report
from modelhost.monitoring.report_html import REPORT_CSS, render_sections
from modelhost.registry import Registry
from modelhost.registry.card import render_fragment as render_card
from modelhost.rollout.controller import Controller
from modelhost.rollout.service import ACTIONS, RolloutService
from modelhost.security import ApiKeys, Permission, Principal, allows
from modelhost.security.sessions import Session, Sessions, csrf_matches, tokens_match
from modelhost.serving.console import charts, views
from modelhost.serving.errors import status_for
from modelhost.store.audit import AuditStore
from modelhost.store.datasets import DatasetStore
from modelhost.store.monitoring import PredictionLogStore
from modelhost.store.profiles import ProfileStore
from modelhost.store.tracking import TrackingStore

log = logging.getLogger(__name__)

PREFIX = "/ui"
SESSION_COOKIE = "modelhost_session"
CSRF_COOKIE = "modelhost_csrf"
_STATIC = {"htmx.min.js": "text/javascript", "console.js": "text/javascript",
           "console.css": "text/css", "htmx.LICENSE.txt": "text/plain"}
_WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1),
            "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}
_RUNS_SHOWN = 200
_VERSIONS_SHOWN = 50


@dataclass(frozen=True)
class ConsoleServices:
    """What the console reads and acts through: the API's own services (None where this
    server has none; the page then says so)."""

    registry: Registry
    auth: bool
    sessions: Sessions | None = None
    keys: ApiKeys | None = None
    audit: AuditStore | None = None
    rollouts: RolloutService | None = None
    analysis: Controller | None = None
    profiles: ProfileStore | None = None
    monitoring: tuple[DriftService, PredictionLogStore] | None = None  # when it is on
    alerts: AlertService | None = None
    runs: TrackingStore | None = None
    datasets: DatasetStore | None = None


@dataclass(frozen=True)
class Viewer:
    """The person at the browser: their key (None with auth off), the CSRF token their
    forms carry, and a new CSRF cookie to set (auth off, first visit)."""

    principal: Principal | None
    csrf: str
    new_csrf_cookie: str | None = None
    session: Session | None = None  # auth on: the signed-in session

    def can(self, permission: Permission) -> bool:
        return self.principal is None or allows(self.principal.role, permission)

    @property
    def name(self) -> str:
        return "local" if self.principal is None else self.principal.name


class _SignInNeeded(Exception):  # noqa: N818 (control flow, not an error)
    def __init__(self, to: str) -> None:
        self.to = to


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelhost.serving.console", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["when"] = _when
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.globals["Permission"] = Permission
    return env


def install(api: FastAPI, services: ConsoleServices) -> None:
    """Add the console's routes to ``api``."""
    env = _environment()
    s = services

    async def viewer(request: Request) -> Viewer:
        if not s.auth:
            token = request.cookies.get(CSRF_COOKIE) or ""
            if len(token) == 43:
                return Viewer(None, token)
            token = secrets.token_urlsafe(32)
            return Viewer(None, token, new_csrf_cookie=token)
        assert s.sessions is not None
        try:  # it reads the key's record: off the event loop, which serves predictions
            session = await asyncio.to_thread(s.sessions.check,
                                              request.cookies.get(SESSION_COOKIE))
        except UnauthorizedError:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _SignInNeeded(f"{PREFIX}/login?next={quote(target, safe='')}") from None
        return Viewer(session.principal, session.csrf, session=session)

    def render(request: Request, who: Viewer | None, template: str, *, status: int = 200,
               **context: Any) -> HTMLResponse:
        body = env.get_template(template).render(
            viewer=who, path=request.url.path, prefix=PREFIX, **context)
        return _response(request, who, body, status)

    async def render_off_loop(request: Request, who: Viewer | None, template: str,
                              **context: Any) -> HTMLResponse:
        """:func:`render` in a worker thread, for the pages with long tables: the event
        loop keeps answering predictions meanwhile."""
        body = await asyncio.to_thread(env.get_template(template).render, viewer=who,
                                       path=request.url.path, prefix=PREFIX, **context)
        return _response(request, who, body, 200)

    def _response(request: Request, who: Viewer | None, body: str,
                  status: int) -> HTMLResponse:
        response = HTMLResponse(body, status)
        if who is not None and who.new_csrf_cookie is not None:
            response.set_cookie(CSRF_COOKIE, who.new_csrf_cookie, httponly=True,
                                samesite="strict", secure=_tls(request), path=PREFIX)
        return response

    def error_page(request: Request, who: Viewer | None, status: int,
                   message: str) -> HTMLResponse:
        return render(request, who, "error.html", status=status, status_code=status,
                      message=message)

    Handler = Callable[..., Awaitable[Response]]

    def page(permission: Permission = Permission.READ) -> Callable[[Handler], Handler]:
        """A console route: signed in (else to the login page), allowed ``permission``
        (else 403), its service errors as the console's error page, never a trace."""

        def decorate(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def run(request: Request, *args: Any, **kwargs: Any) -> Response:
                who: Viewer | None = None
                try:
                    who = await viewer(request)
                    if not who.can(permission):
                        raise ForbiddenError(f"the {who.principal.role.value} role does "  # type: ignore[union-attr]
                                             f"not allow this page or action")
                    if who.principal is not None:
                        set_actor(who.principal.actor, request.headers.get("x-request-id"))
                    return await handler(request, who, *args, **kwargs)
                except _SignInNeeded as redirect:
                    if request.headers.get("hx-request"):  # htmx: the whole page goes
                        return Response(status_code=204, headers={"hx-redirect": redirect.to})
                    return RedirectResponse(redirect.to, status_code=303)
                except ModelhostError as exc:
                    return error_page(request, who, status_for(exc), exc.message)
                except Exception:  # never a trace in a page
                    log.exception("console page %s failed", request.url.path)
                    return error_page(request, who, 500, "Something went wrong on the "
                                      "server; the request id in its log tells what.")

            # FastAPI reads the route's parameters from this: the viewer is ours to give.
            signature = inspect.signature(handler)
            run.__signature__ = signature.replace(  # type: ignore[attr-defined]
                parameters=[p for p in signature.parameters.values() if p.name != "who"])
            return run
        return decorate

    async def form(request: Request, who: Viewer) -> dict[str, str]:
        """The posted form, after checking where it comes from and its CSRF token (403:
        nothing changes)."""
        same_site_only(request)
        data = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        token = data.pop("csrf", "")
        if who.session is not None:  # auth on: the session's own token
            ok = csrf_matches(who.session, token)
        else:  # auth off: the token of the cookie this browser was given
            ok = who.new_csrf_cookie is None and tokens_match(who.csrf, token)
        if not ok:
            raise ForbiddenError("the form's security token is missing or wrong; reload "
                                 "the page and try again")
        return data

    # --- sign-in --------------------------------------------------------------------

    @api.get(PREFIX, include_in_schema=False)
    @api.get(PREFIX + "/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/models", status_code=303)

    @api.get(PREFIX + "/login", include_in_schema=False)
    async def login_page(request: Request, next: str = "") -> Response:
        if not s.auth:
            return RedirectResponse(_safe_next(next), status_code=303)
        return render(request, None, "login.html", next=_safe_next(next), message="")

    @api.post(PREFIX + "/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not s.auth or s.sessions is None:
            return RedirectResponse(f"{PREFIX}/models", status_code=303)
        try:
            same_site_only(request)
        except ForbiddenError as exc:
            return error_page(request, None, 403, exc.message)
        data = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        target = _safe_next(data.get("next", ""))
        sessions = s.sessions
        try:
            session = await asyncio.to_thread(sessions.sign_in, data.get("key", ""))
            if not allows(session.principal.role, Permission.READ):
                raise ForbiddenError("this key's role cannot use the console (it needs "
                                     "viewer, deployer or admin)")
        except (UnauthorizedError, ForbiddenError) as exc:
            await asyncio.to_thread(_audit_sign_in, s.audit, request, None, str(exc))
            message = (exc.message if isinstance(exc, ForbiddenError)
                       else "That key is not valid (unknown, revoked or expired).")
            return render(request, None, "login.html", status=401, next=target,
                          message=message)
        await asyncio.to_thread(_audit_sign_in, s.audit, request, session.principal, None)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, session.token, httponly=True,
                            samesite="strict", secure=_tls(request), path=PREFIX,
                            expires=session.expires_at)
        return response

    @api.post(PREFIX + "/logout", include_in_schema=False)
    @page()
    async def logout(request: Request, who: Viewer) -> Response:
        await form(request, who)
        response = RedirectResponse(f"{PREFIX}/login" if s.auth else f"{PREFIX}/models",
                                    status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # --- models ---------------------------------------------------------------------

    @api.get(PREFIX + "/models", include_in_schema=False)
    @page()
    async def models(request: Request, who: Viewer) -> Response:
        rows = await asyncio.to_thread(views.model_rows, s.registry, s.profiles)
        return await render_off_loop(request, who, "models.html", rows=rows,
                                     split=charts.split_bar, window=views.TRAFFIC_WINDOW)

    @api.get(PREFIX + "/models/{name}", include_in_schema=False)
    @page()
    async def model(request: Request, who: Viewer, name: str) -> Response:
        # The newest versions only, unless asked for all: a model may have thousands.
        every = request.query_params.get("all") == "1"
        asked = request.query_params.get("version")

        def read() -> dict[str, Any]:
            m = s.registry.get_model(name)
            versions = s.registry.list_versions(
                name, newest=None if every else _VERSIONS_SHOWN)
            ref = asked or m.production_version or (
                versions[-1].version if versions else None)
            current = next((v for v in versions if v.version == ref), None)
            if current is None and ref is not None:  # older than the window shown
                try:
                    current = s.registry.get_version(name, ref)
                except (VersionNotFoundError, InvalidInputError):  # ?version= names none
                    raise NotFoundError(f"model {name!r} has no version {ref!r}") from None
            return {"model": m, "versions": list(reversed(versions)), "current": current,
                    "total": len(versions) if every else s.registry.count_versions(name),
                    "history": list(reversed(s.registry.stage_history(name)))}

        data = await asyncio.to_thread(read)
        versions, history, current = data["versions"], data["history"], data["current"]
        # The model card's sections, escaped by the card's renderer (as `modelhost card`
        # writes them), from what was read above.
        card = "" if current is None else render_card(
            current, [c for c in reversed(history) if c.version == current.version],
            heading="h3", table_class="data narrow")
        return await render_off_loop(
            request, who, "model.html", columns=views.signature_columns, current=current,
            card=card, model=data["model"], history=history[:20], versions=versions,
            total=data["total"])

    @api.get(PREFIX + "/models/{name}/compare", include_in_schema=False)
    @page()
    async def compare(request: Request, who: Viewer, name: str, a: str = "",
                      b: str = "") -> Response:
        if not a or not b:
            raise InvalidInputError("choose two versions to compare (a and b)")
        va = await asyncio.to_thread(s.registry.get_version, name, a)
        vb = await asyncio.to_thread(s.registry.get_version, name, b)
        return render(request, who, "compare.html", name=name,
                      comparison=views.compare_versions(va, vb))

    # --- deployments ----------------------------------------------------------------

    def rollouts() -> RolloutService:
        if s.rollouts is None:
            raise NotFoundError("deployments are not available on this server")
        return s.rollouts

    async def deployment_context(name: str) -> dict[str, Any]:
        service = rollouts()
        d = await asyncio.to_thread(service.status, name)  # 404 for an unknown model
        events = await asyncio.to_thread(service.events, name)
        analysis = (await asyncio.to_thread(s.analysis.analysis, name)
                    if s.analysis is not None and d.state.running else None)
        return {"name": name, "d": d, "events": list(reversed(events))[:100],
                "analysis": analysis, "traffic": views.traffic_split(d),
                "split": charts.split_bar, "actions": ACTIONS}

    @api.get(PREFIX + "/deployments/{name}", include_in_schema=False)
    @page()
    async def deployment(request: Request, who: Viewer, name: str) -> Response:
        return render(request, who, "deployment.html", **await deployment_context(name))

    @api.get(PREFIX + "/deployments/{name}/live", include_in_schema=False)
    @page()
    async def deployment_live(request: Request, who: Viewer, name: str) -> Response:
        return render(request, who, "deployment_live.html", **await deployment_context(name))

    @api.post(PREFIX + "/deployments/{name}/action", include_in_schema=False)
    @page(Permission.DEPLOY)
    async def deployment_action(request: Request, who: Viewer, name: str) -> Response:
        data = await form(request, who)
        action, reason = data.get("action", ""), data.get("reason", "")[:1000]
        service = rollouts()
        if action == "rollback":
            await asyncio.to_thread(service.rollback, name, reason=reason)
        elif action in ACTIONS:
            await asyncio.to_thread(service.act, name, action, reason=reason)
        else:
            raise InvalidInputError(f"unknown action {action!r}; expected rollback or "
                                    f"one of {', '.join(ACTIONS)}")
        return RedirectResponse(f"{PREFIX}/deployments/{quote(name, safe='')}",
                                status_code=303)

    # --- monitoring -----------------------------------------------------------------

    @api.get(PREFIX + "/monitoring/{name}", include_in_schema=False)
    @page()
    async def monitoring(request: Request, who: Viewer, name: str, version: str = "",
                         window: str = "24h") -> Response:
        if window not in _WINDOWS:
            raise InvalidInputError(f"unknown window {window!r}; expected one of "
                                    f"{', '.join(_WINDOWS)}")
        m = await asyncio.to_thread(s.registry.get_model, name)
        ref = version or m.production_version or m.latest_version
        if ref is None:
            raise NotFoundError(f"model {name!r} has no version yet")
        mv = await asyncio.to_thread(s.registry.get_version, name, ref)
        sections = None
        if s.monitoring is not None:
            drift, predictions = s.monitoring
            end = dt.datetime.now(dt.timezone.utc)
            sections = await asyncio.to_thread(lambda: render_sections(build_report(
                drift, predictions, model=name, version=mv.version,
                start=end - _WINDOWS[window], end=end, window=window,
                registered=mv.metrics)))
        alerts = []
        events = []
        if s.alerts is not None:
            alerts = await asyncio.to_thread(s.alerts.rules, name)
            events = await asyncio.to_thread(s.alerts.events, model=name, limit=50)
        versions = await asyncio.to_thread(s.registry.list_versions, name)
        return await render_off_loop(
            request, who, "monitoring.html", name=name, mv=mv,
            versions=[v.version for v in reversed(versions)], window=window,
            windows=list(_WINDOWS), sections=sections, alerts=alerts, alert_events=events)

    @api.get(PREFIX + "/static/report.css", include_in_schema=False)
    async def report_css() -> Response:
        return Response(REPORT_CSS, media_type="text/css")

    # --- runs and datasets ----------------------------------------------------------

    def tracking() -> TrackingStore:
        if s.runs is None:
            raise NotFoundError("runs are not available on this server")
        return s.runs

    @api.get(PREFIX + "/runs", include_in_schema=False)
    @page()
    async def runs(request: Request, who: Viewer, experiment: str = "") -> Response:
        store = tracking()
        experiments = await asyncio.to_thread(store.experiment_names)
        shown = await asyncio.to_thread(store.list_runs, experiment or None,
                                        limit=_RUNS_SHOWN)
        datasets: list[tuple[str, list[Any]]] = []
        if s.datasets is not None:
            store_d = s.datasets
            datasets = await asyncio.to_thread(lambda: [
                (n, store_d.list_versions(n)) for n in store_d.list_datasets()[:100]])
        metric_names = sorted({k for r in shown for k in r.metrics})[:6]
        return await render_off_loop(
            request, who, "runs.html", runs=shown, experiment=experiment,
            experiments=experiments, metric_names=metric_names, datasets=datasets)

    @api.get(PREFIX + "/runs/compare", include_in_schema=False)
    @page()
    async def compare_runs(request: Request, who: Viewer) -> Response:
        store = tracking()
        ids = request.query_params.getlist("run")[:8]
        if len(ids) < 2:
            raise InvalidInputError("choose at least two runs to compare")
        chosen = [await asyncio.to_thread(store.get_run, i) for i in ids]
        comparison = await asyncio.to_thread(views.compare_runs, chosen, store.metric_history)
        return render(request, who, "run_compare.html", c=comparison, lines=charts.lines)

    # --- audit and keys -------------------------------------------------------------

    @api.get(PREFIX + "/audit", include_in_schema=False)
    @page(Permission.ADMIN)
    async def audit(request: Request, who: Viewer, action: str = "") -> Response:
        if s.audit is None:
            raise NotFoundError("the audit log is not available on this server")
        entries = await asyncio.to_thread(s.audit.list, limit=200, action=action or None)
        return await render_off_loop(request, who, "audit.html", entries=entries, action=action)

    @api.get(PREFIX + "/audit/verify", include_in_schema=False)
    @page(Permission.ADMIN)
    async def audit_verify(request: Request, who: Viewer) -> Response:
        """The chain's verification, which reads and hashes every entry: a fragment the
        audit page loads after it shows, so that the page stays fast as the log grows."""
        if s.audit is None:
            raise NotFoundError("the audit log is not available on this server")
        verified = await asyncio.to_thread(s.audit.verify)
        return render(request, who, "audit_verify.html", verified=verified)

    @api.get(PREFIX + "/keys", include_in_schema=False)
    @page(Permission.ADMIN)
    async def keys(request: Request, who: Viewer) -> Response:
        if s.keys is None:
            raise NotFoundError("API keys are not available on this server")
        found = await asyncio.to_thread(s.keys.list, include_revoked=True)
        return render(request, who, "keys.html", keys=found)

    @api.post(PREFIX + "/keys/{key_id}/revoke", include_in_schema=False)
    @page(Permission.ADMIN)
    async def revoke(request: Request, who: Viewer, key_id: str) -> Response:
        await form(request, who)
        if s.keys is None:
            raise NotFoundError("API keys are not available on this server")
        await asyncio.to_thread(s.keys.revoke, key_id)  # audited by the store
        return RedirectResponse(f"{PREFIX}/keys", status_code=303)

    # --- assets and the rest --------------------------------------------------------

    @api.get(PREFIX + "/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        media = _STATIC.get(name)
        if media is None:
            raise_not_found = NotFoundError(f"no console asset {name!r}")
            return Response(raise_not_found.message, 404, media_type="text/plain")
        data = resources.files("modelhost.serving.console") / "static" / name
        return Response(data.read_bytes(), media_type=media)

    @api.get(PREFIX + "/{rest:path}", include_in_schema=False)
    @page()
    async def not_found(request: Request, who: Viewer, rest: str) -> Response:
        raise NotFoundError("there is no console page here")


def same_site_only(request: Request) -> None:
    """Refuse a form posted by another site (ForbiddenError): the browser says where a
    request comes from (``Sec-Fetch-Site``, else ``Origin``), and it must be this server.
    Another port of the same host is another origin: a page there could set a cookie
    for this one (cookies ignore ports), so the token alone would not tell. Clients that
    are not browsers send neither header and are not a cross-site threat."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site in ("same-origin", "none"):
            return
        raise ForbiddenError("this form was posted from another site")
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null" or urlsplit(origin).netloc != request.headers.get("host", ""):
        raise ForbiddenError("this form was posted from another site")


def _audit_sign_in(audit: AuditStore | None, request: Request, principal: Principal | None,
                   problem: str | None) -> None:
    if audit is None:
        return
    rid = request.headers.get("x-request-id")
    if principal is None:
        client = request.client.host if request.client else "unknown"
        with acting_as(f"anonymous@{client}", rid):
            audit.record("access.denied", f"POST {PREFIX}/login",
                         after={"reason": problem or "no valid key"})
        return
    with acting_as(principal.actor, rid):
        audit.record("console.sign_in", principal.key_id, after={"role": principal.role.value})


def _safe_next(target: str) -> str:
    """Where to go after signing in: a console path of this server, never elsewhere."""
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/")
            or "\\" in target or target.startswith("//")):
        return f"{PREFIX}/models"
    return target


def _tls(request: Request) -> bool:
    return request.url.scheme == "https"


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

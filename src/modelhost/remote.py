"""A modelhost server over HTTP: ``modelhost.Client("http://host:8000", api_key=...)``.

What a deployer or an application does from another machine, through the server's own
routes (PRODUCT.md §3.1, §3.4, §3.7, §3.8) and with its roles: deploy and move rollouts,
roll back, read the deployment, its events and its analysis, predict, send feedback, read
the registry and move stages. Deployments come back as the same :class:`Deployment`
objects a local ``Client`` returns, so code written against one works with the other.

An error answer is raised as the modelhost error of its code (``not_found`` as
NotFoundError, ``conflict`` as ConflictError, ...) with the server's message; a server
that cannot be reached as StoreUnavailableError. The API key, when given, goes in the
``Authorization: Bearer`` header and is never shown in a message or ``repr``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from modelhost.entities import Deployment, DeploymentEvent
from modelhost.errors import ModelhostError, StoreUnavailableError

__all__ = ["RemoteClient"]


def _error_classes() -> dict[str, type[ModelhostError]]:
    """code -> the class that introduces it (NotFoundError for ``not_found``, not one of
    its subclasses): every error a server may answer with."""
    found: dict[str, type[ModelhostError]] = {"error": ModelhostError}
    pending: list[type[ModelhostError]] = [ModelhostError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if "code" in sub.__dict__:
                found.setdefault(sub.__dict__["code"], sub)
            pending.append(sub)
    return found


def _raise_for(status: int, body: Any, reason: str) -> None:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code", "error")), str(error.get("message", ""))
        details = error.get("details") or ()
    else:  # not a modelhost answer (a proxy in between, or another server)
        code, message, details = "error", f"the server answered {status} {reason}", ()
    cls = _error_classes().get(code, ModelhostError)
    raise _with_message(cls, message, details if isinstance(details, list) else [])


def _path(*parts: str) -> str:
    return "/".join(quote(p, safe="") for p in parts)


class RemoteClient:
    """A modelhost server at ``url`` (``http://host:8000``), with ``api_key`` when the
    server requires one. Closes its connections on :meth:`close` (or as a context
    manager)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 30.0,
                 verify: bool | str | ssl.SSLContext = True, transport: Any = None) -> None:
        """``verify``: for an https server, check its certificate against the system's
        authorities (True), a CA file (its path), or an ``ssl.SSLContext``."""
        import httpx

        if not url.startswith(("http://", "https://")):
            from modelhost.errors import InvalidInputError

            raise InvalidInputError(f"a server address starts with http:// or https://, "
                                    f"got {url!r}")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s,
                                  verify=verify, transport=transport)

    def __repr__(self) -> str:
        return f"RemoteClient({self.url!r})"

    # --- HTTP -------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Any = None,
              params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None) -> Any:
        import httpx

        try:
            answer = self._http.request(method, path, json=json, params=params,
                                        headers=headers)
        except httpx.HTTPError as exc:
            raise _unreachable(self.url, exc) from exc
        try:
            body = answer.json() if answer.content else None
        except ValueError:
            body = None
        if answer.status_code >= 400:
            _raise_for(answer.status_code, body, answer.reason_phrase)
        return body

    # --- deployments (§3.7) -----------------------------------------------------------

    def deploy(self, name: str, version: str, *, strategy: str = "canary",
               **options: Any) -> Deployment:
        """Start a rollout of ``version`` with ``strategy`` and its options, as
        ``Client.deploy`` does locally (the ``deployer`` role)."""
        body = {"version": version, "strategy": strategy, "options": options or None}
        return Deployment.from_dict(self._call("POST", _path("v1", "deployments", name),
                                               json=body))

    def deployment(self, name: str) -> Deployment:
        """The model's deployment: what serves it and how its rollout is going."""
        return Deployment.from_dict(self._call("GET", _path("v1", "deployments", name)))

    def rollout(self, name: str, action: str, *, reason: str = "") -> Deployment:
        """``promote``, ``abort``, ``step``, ``pause`` or ``resume`` the rollout."""
        return Deployment.from_dict(self._call(
            "POST", _path("v1", "deployments", name, "rollout"),
            json={"action": action, "reason": reason}))

    def rollback(self, name: str, *, reason: str = "") -> Deployment:
        """Back to the previous stable version at once."""
        return Deployment.from_dict(self._call(
            "POST", _path("v1", "deployments", name, "rollback"), json={"reason": reason}))

    def events(self, name: str) -> list[DeploymentEvent]:
        """What happened to the deployment, newest last."""
        body = self._call("GET", _path("v1", "deployments", name, "events"))
        return [DeploymentEvent.from_dict(name, e) for e in body["events"]]

    def analysis(self, name: str) -> dict[str, Any]:
        """Each arm's requests, errors, latency and metric, and the verdict so far."""
        result: dict[str, Any] = self._call("GET", _path("v1", "deployments", name,
                                                         "analysis"))
        return result

    # --- predictions and feedback (§3.1, §3.8) ----------------------------------------

    def predict(self, name: str, inputs: Any, *, version: str | None = None,
                routing_key: str | None = None,
                params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The server's answer (``model``, ``version``, ``request_id``, ``predictions``
        and ``probabilities``): routed by the deployment, sticky per ``routing_key``,
        or pinned to ``version``. ``inputs``: records, a dict of columns, or a
        DataFrame (sent as records)."""
        if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):
            inputs = inputs.to_dict(orient="records")
        headers = {}
        if version is not None:
            headers["X-Model-Version"] = version
        if routing_key is not None:
            headers["X-Routing-Key"] = routing_key
        body: dict[str, Any] = {"inputs": inputs}
        if params is not None:
            body["params"] = dict(params)
        result: dict[str, Any] = self._call("POST", _path("v1", "models", name, "predict"),
                                            json=body, headers=headers)
        return result

    def feedback(self, request_id: str | None = None, label: Any = None, *,
                 items: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """The true label of a prediction (or ``items`` of ``request_id`` and
        ``label``); returns the server's count of what it accepted."""
        if items is None:
            if request_id is None:
                from modelhost.errors import InvalidInputError

                raise InvalidInputError("give a request_id and its label, or items")
            body: dict[str, Any] = {"request_id": request_id, "label": label}
        else:
            body = {"items": [dict(i) for i in items]}
        result: dict[str, Any] = self._call("POST", "v1/feedback", json=body)
        return result

    # --- the registry (§3.4) ----------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "v1/models")
        return result

    def get_model_version(self, name: str, ref: str = "latest") -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", _path("v1", "models", name, "versions",
                                                         ref))
        return result

    def transition_stage(self, name: str, ref: str, stage: str, *,
                         reason: str = "") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "POST", _path("v1", "models", name, "versions", ref, "stage"),
            json={"stage": str(getattr(stage, "value", stage)), "reason": reason})
        return result

    # --- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unreachable(url: str, exc: Exception) -> ModelhostError:
    return _with_message(StoreUnavailableError,
                         f"the modelhost server at {url} could not be reached "
                         f"({type(exc).__name__}); is it running?")


def _with_message(cls: type[ModelhostError], message: str,
                  details: Sequence[dict[str, Any]] = ()) -> ModelhostError:
    """An error of ``cls`` that says ``message``: the classes' own constructors build
    their message from values, which a client does not have, only the server's words."""
    error = cls.__new__(cls)
    ModelhostError.__init__(error, message, details=details)
    return error

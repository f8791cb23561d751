"""``modelhost.Client("http://host:8000", api_key=...)``: what a deployer or an
application does from another machine, through the server's own routes (PRODUCT.md
§3.1, §3.4, §3.7-3.9) and with its roles.

Like a local ``Client``, it has a ``registry``, ``rollouts`` (the rollout service) and
the registry shortcuts MLflow users look for (``list_models``, ``get_model_version``,
``transition_stage``, ...), answering with the same objects; ``jobs`` submits and reads
asynchronous prediction jobs. An error answer is raised as the modelhost error of its
code with the server's message; a server that cannot be reached as
StoreUnavailableError.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from modelhost.entities import (
    Deployment,
    DeploymentEvent,
    Model,
    ModelVersion,
    Stage,
    StageChange,
)
from modelhost.errors import InvalidInputError
from modelhost.remote.http import Http, path
from modelhost.remote.jobs import RemoteJobs
from modelhost.remote.registry import RemoteRegistry
from modelhost.remote.rollouts import RemoteRollouts


class RemoteClient:
    """A modelhost server at ``url`` (``http://host:8000``), with ``api_key`` when the
    server requires one. Closes its connections on :meth:`close` (or as a context
    manager)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 30.0,
                 verify: bool | str | ssl.SSLContext = True, transport: Any = None) -> None:
        """``verify``: for an https server, check its certificate against the system's
        authorities (True), a CA file (its path), or an ``ssl.SSLContext``."""
        self._http = Http(url, api_key=api_key, timeout_s=timeout_s, verify=verify,
                          transport=transport)
        self.url = self._http.url
        self.registry = RemoteRegistry(self._http)
        self.rollouts = RemoteRollouts(self._http)
        self.jobs = RemoteJobs(self._http)

    def __repr__(self) -> str:
        return f"RemoteClient({self.url!r})"

    # --- the registry (§3.4), by the names of the local Client ------------------------

    def register_model(self, model: object = None, *, name: str, **kwargs: Any
                       ) -> ModelVersion:
        """Upload a model file or folder (``path=...``) as a new version."""
        return self.registry.register(model, name=name, **kwargs)

    def list_models(self) -> list[Model]:
        return self.registry.list_models()

    def get_model_version(self, name: str, ref: str = "latest") -> ModelVersion:
        return self.registry.get_version(name, ref)

    def transition_stage(self, name: str, ref: str, stage: Stage | str, *,
                         reason: str = "") -> list[StageChange]:
        return self.registry.transition(name, ref, stage, reason=reason)

    def set_alias(self, name: str, alias: str, ref: str) -> ModelVersion:
        return self.registry.set_alias(name, alias, ref)

    # --- deployments (§3.7) -----------------------------------------------------------

    def deploy(self, name: str, version: str, *, strategy: str = "canary",
               **options: Any) -> Deployment:
        """Start a rollout of ``version`` with ``strategy`` and its options, as
        ``Client.deploy`` does locally (the ``deployer`` role)."""
        return self.rollouts.deploy(name, version, strategy, options)

    def deployment(self, name: str) -> Deployment:
        """The model's deployment: what serves it and how its rollout is going."""
        return self.rollouts.status(name)

    def rollout(self, name: str, action: str, *, reason: str = "") -> Deployment:
        """``promote``, ``abort``, ``step``, ``pause`` or ``resume`` the rollout."""
        return self.rollouts.act(name, action, reason=reason)

    def rollback(self, name: str, *, reason: str = "") -> Deployment:
        """Back to the previous stable version at once."""
        return self.rollouts.rollback(name, reason=reason)

    def events(self, name: str) -> list[DeploymentEvent]:
        """What happened to the deployment, newest last."""
        return self.rollouts.events(name)

    def analysis(self, name: str) -> dict[str, Any]:
        """Each arm's requests, errors, latency and metric, and the verdict so far."""
        return self.rollouts.analysis(name)

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
        result: dict[str, Any] = self._http.call(
            "POST", path("v1", "models", name, "predict"), json=body, headers=headers)
        return result

    def feedback(self, request_id: str | None = None, label: Any = None, *,
                 items: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """The true label of a prediction (or ``items`` of ``request_id`` and
        ``label``); returns the server's count of what it accepted."""
        if items is None:
            if request_id is None:
                raise InvalidInputError("give a request_id and its label, or items")
            body: dict[str, Any] = {"request_id": request_id, "label": label}
        else:
            body = {"items": [dict(i) for i in items]}
        result: dict[str, Any] = self._http.call("POST", "v1/feedback", json=body)
        return result

    # --- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

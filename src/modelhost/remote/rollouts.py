"""A server's deployments (PRODUCT.md §3.7) with the names, arguments and objects of
the local :class:`~modelhost.rollout.service.RolloutService`: ``status``, ``events``,
``deploy``, ``act``, ``rollback``, and the live ``analysis``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelhost.entities import Deployment, DeploymentEvent
from modelhost.remote.http import Http, path


class RemoteRollouts:
    def __init__(self, http: Http) -> None:
        self._http = http

    def status(self, model: str) -> Deployment:
        return Deployment.from_dict(self._http.call("GET", path("v1", "deployments", model)))

    def events(self, model: str) -> list[DeploymentEvent]:
        body = self._http.call("GET", path("v1", "deployments", model, "events"))
        return [DeploymentEvent.from_dict(model, e) for e in body["events"]]

    def analysis(self, model: str) -> dict[str, Any]:
        """Each arm's requests, errors, latency and metric, and the verdict so far."""
        result: dict[str, Any] = self._http.call(
            "GET", path("v1", "deployments", model, "analysis"))
        return result

    def deploy(self, model: str, version: str, strategy: Any = "canary",
               options: Mapping[str, Any] | None = None) -> Deployment:
        body = {"version": version, "strategy": str(getattr(strategy, "value", strategy)),
                "options": dict(options) if options else None}
        return Deployment.from_dict(self._http.call("POST", path("v1", "deployments", model),
                                                    json=body))

    def act(self, model: str, action: str, *, reason: str = "") -> Deployment:
        return Deployment.from_dict(self._http.call(
            "POST", path("v1", "deployments", model, "rollout"),
            json={"action": action, "reason": reason}))

    def rollback(self, model: str, *, reason: str = "") -> Deployment:
        return Deployment.from_dict(self._http.call(
            "POST", path("v1", "deployments", model, "rollback"), json={"reason": reason}))

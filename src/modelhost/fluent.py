"""The module-level tracking API (``mh.set_experiment``, ``mh.start_run``, ``mh.log_*``).

Like MLflow's, it keeps a little process state: a default client built on first use
from the environment, the current experiment and a stack of active runs (per thread
and per asyncio task, through a context variable).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelhost._utils import validate_name
from modelhost.client import Client
from modelhost.entities import DatasetVersion, ModelVersion
from modelhost.errors import InvalidInputError
from modelhost.tracking import ActiveRun

DEFAULT_EXPERIMENT = "default"

_lock = threading.Lock()
_client: Client | None = None
_experiment = DEFAULT_EXPERIMENT
_runs: contextvars.ContextVar[tuple[ActiveRun, ...]] = contextvars.ContextVar(
    "modelhost_runs", default=())


def get_client() -> Client:
    """The default client, created from ``MODELHOST_*`` settings on first use."""
    global _client
    with _lock:
        if _client is None:
            _client = Client()
        return _client


def set_client(client: Client | None) -> None:
    """Use ``client`` for the module-level API (None: build one again on next use)."""
    global _client
    with _lock:
        _client = client


def set_experiment(name: str) -> str:
    global _experiment
    validate_name(name, "experiment")
    get_client().tracking.store.get_or_create_experiment(name)
    _experiment = name
    return name


@contextmanager
def start_run(*, name: str | None = None, experiment: str | None = None,
              params: Mapping[str, Any] | None = None,
              tags: Mapping[str, str] | None = None) -> Iterator[ActiveRun]:
    """Start a run; it ends FINISHED, or FAILED if the block raises."""
    with get_client().tracking.start_run(experiment or _experiment, name=name, params=params,
                                         tags=tags) as run:
        token = _runs.set((*_runs.get(), run))
        try:
            yield run
        finally:
            _runs.reset(token)


@contextmanager
def use_run(run: ActiveRun) -> Iterator[ActiveRun]:
    """Make ``run`` (started elsewhere, e.g. by a pipeline) the active run of the
    module-level ``log_*`` functions inside the block; it is not ended here."""
    token = _runs.set((*_runs.get(), run))
    try:
        yield run
    finally:
        _runs.reset(token)


def active_run() -> ActiveRun | None:
    stack = _runs.get()
    return stack[-1] if stack else None


def _run() -> ActiveRun:
    run = active_run()
    if run is None:
        raise InvalidInputError("no active run: use 'with modelhost.start_run():' first")
    return run


def log_param(key: str, value: Any) -> None:
    _run().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _run().log_params(params)


def log_metric(key: str, value: float, *, step: int | None = None) -> None:
    _run().log_metric(key, value, step=step)


def log_metrics(metrics: Mapping[str, float], *, step: int | None = None) -> None:
    _run().log_metrics(metrics, step=step)


def set_tag(key: str, value: str) -> None:
    _run().set_tag(key, value)


def log_artifact(path: str | Path, *, name: str | None = None) -> str:
    return _run().log_artifact(path, name=name)


def log_dataset(path: str | Path, *, name: str) -> DatasetVersion:
    """Version a dataset; inside a run, also record that the run used it."""
    run = active_run()
    if run is not None:
        return run.log_dataset(path, name=name)
    return get_client().datasets.add(path, name=name)[0]


def log_model(model: object, *, name: str, **kwargs: Any) -> ModelVersion:
    return _run().log_model(model, name=name, **kwargs)

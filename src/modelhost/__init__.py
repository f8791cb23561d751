"""modelhost: versioned prediction APIs for trained models, and what keeps them healthy.

The public Python API::

    import modelhost as mh
    mh.set_experiment("churn")
    with mh.start_run(params={"C": 1.0}) as run:
        run.log_metric("auc", 0.91)
        version = run.log_model(model, name="churn", input_example=X[:5])
"""

from typing import TYPE_CHECKING, Any

from modelhost.entities import (
    ColumnSpec,
    ColumnType,
    DatasetVersion,
    Model,
    ModelVersion,
    Run,
    RunStatus,
    Signature,
    Stage,
    TensorSpec,
)
from modelhost.errors import ModelhostError

if TYPE_CHECKING:
    from modelhost.client import Client
    from modelhost.config import Settings
    from modelhost.fluent import (
        active_run,
        get_client,
        log_artifact,
        log_dataset,
        log_metric,
        log_metrics,
        log_model,
        log_param,
        log_params,
        set_client,
        set_experiment,
        set_tag,
        start_run,
    )
    from modelhost.remote import RemoteClient
    from modelhost.signature import infer_signature

    __version__: str

# Loaded on first use, so that `import modelhost` (and every CLI call) does not pay for
# SQLAlchemy, pydantic-settings, pandas or the package metadata it does not need.
_LAZY = {
    "Client": "modelhost.client", "RemoteClient": "modelhost.remote",
    "Settings": "modelhost.config",
    "infer_signature": "modelhost.signature",
    **dict.fromkeys(("active_run", "get_client", "log_artifact", "log_dataset", "log_metric",
                     "log_metrics", "log_model", "log_param", "log_params", "set_client",
                     "set_experiment", "set_tag", "start_run"), "modelhost.fluent"),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "__version__":
        from importlib import metadata

        try:
            value: Any = metadata.version("modelhost")
        except metadata.PackageNotFoundError:  # pragma: no cover - a source tree
            value = "0.0.0"
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'modelhost' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Client",
    "ColumnSpec",
    "ColumnType",
    "DatasetVersion",
    "Model",
    "ModelVersion",
    "ModelhostError",
    "RemoteClient",
    "Run",
    "RunStatus",
    "Settings",
    "Signature",
    "Stage",
    "TensorSpec",
    "__version__",
    "active_run",
    "get_client",
    "infer_signature",
    "log_artifact",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "set_client",
    "set_experiment",
    "set_tag",
    "start_run",
]

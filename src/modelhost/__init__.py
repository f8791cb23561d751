"""modelhost: versioned prediction APIs for trained models, and what keeps them healthy.

The public Python API::

    import modelhost as mh
    mh.set_experiment("churn")
    with mh.start_run(params={"C": 1.0}) as run:
        run.log_metric("auc", 0.91)
        version = run.log_model(model, name="churn", input_example=X[:5])
"""

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from modelhost.client import Client
from modelhost.config import Settings
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

if TYPE_CHECKING:
    from modelhost.signature import infer_signature


def __getattr__(name: str) -> Any:
    # infer_signature needs pandas: import it on first use, not with modelhost.
    if name == "infer_signature":
        from modelhost.signature import infer_signature

        return infer_signature
    raise AttributeError(f"module 'modelhost' has no attribute {name!r}")


try:
    __version__ = _metadata.version("modelhost")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Client",
    "ColumnSpec",
    "ColumnType",
    "DatasetVersion",
    "Model",
    "ModelVersion",
    "ModelhostError",
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

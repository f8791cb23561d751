"""Flavors: how models are saved, recognised, imported and loaded.

A lazy registry maps each flavor name to ``"module:Class"``; a flavor's module (and the
ML libraries it needs) is imported on first use only, so ``import modelhost`` stays fast
and works without the optional extras.

    flavor = flavor_for_object(model)           # or flavor_for_path(path), get_flavor(name)
    saved = flavor.save(model, folder)          # SavedModel(meta, signature, input_example)
    loaded = flavor.load(folder, saved.meta)    # LoadedModel: predict / predict_proba

Flavor modules and the libraries they use are imported under :data:`LOAD_LOCK`, one
thread at a time: first imports of scikit-learn and friends from several threads at
once break (see there).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from modelhost.errors import (
    FileNotFoundInputError,
    FlavorDetectionError,
    InvalidInputError,
    UnknownFlavorError,
)
from modelhost.flavors.base import LOAD_LOCK, Flavor, LoadedModel, SavedModel

__all__ = [
    "LOAD_LOCK",
    "Flavor",
    "LoadedModel",
    "SavedModel",
    "available_flavors",
    "flavor_for_object",
    "flavor_for_path",
    "get_flavor",
]

_REGISTRY: dict[str, str] = {
    "mlflow": "modelhost.flavors.mlflow:MlflowFlavor",
    "onnx": "modelhost.flavors.onnx:OnnxFlavor",
    "python": "modelhost.flavors.python:PythonFlavor",
    "sklearn": "modelhost.flavors.sklearn:SklearnFlavor",
}
# Most specific first: an ONNX graph or an estimator also has what the python flavor
# needs, and an MLflow folder may hold .skops or .onnx files.
_OBJECT_ORDER = ("onnx", "sklearn", "python")
_PATH_ORDER = ("mlflow", "onnx", "sklearn")

_instances: dict[str, Flavor] = {}


def available_flavors() -> list[str]:
    """The registered flavor names, sorted."""
    return sorted(_REGISTRY)


def get_flavor(name: str) -> Flavor:
    """The flavor registered as ``name`` (one shared, stateless instance).

    Raises:
        UnknownFlavorError: no such flavor; the message lists the known ones.
    """
    target = _REGISTRY.get(name) if isinstance(name, str) else None
    if target is None:
        raise UnknownFlavorError(str(name), list(_REGISTRY))
    flavor = _instances.get(name)
    if flavor is not None:
        return flavor
    with LOAD_LOCK:
        flavor = _instances.get(name)
        if flavor is None:
            module_name, _, class_name = target.partition(":")
            cls: type[Flavor] = getattr(importlib.import_module(module_name), class_name)
            flavor = _instances[name] = cls()
    return flavor


def flavor_for_object(model: object) -> Flavor:
    """The flavor that saves this Python object.

    ``onnx.ModelProto`` -> onnx; scikit-learn estimator -> sklearn; anything else with a
    callable ``predict``, or an import path ``"package.module:attr"`` -> python.

    Raises:
        InvalidInputError: none of them can save it.
    """
    for name in _OBJECT_ORDER:
        flavor = get_flavor(name)
        if flavor.can_save(model):
            return flavor
    raise InvalidInputError(
        f"cannot register a {type(model).__name__}: expected a scikit-learn estimator, an "
        "onnx.ModelProto, an object with a predict method, or an import path "
        "'package.module:attr'"
    )


def flavor_for_path(path: Path) -> Flavor:
    """The flavor of a model file or folder on disk, judged by names only.

    A folder with an ``MLmodel`` file -> mlflow; ``*.onnx`` -> onnx; ``*.skops``,
    ``*.joblib``, ``*.pkl``, ``*.pickle`` -> sklearn.

    Raises:
        FileNotFoundInputError: nothing at ``path``.
        FlavorDetectionError: none of them; pass the flavor explicitly.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundInputError(str(path))
    for name in _PATH_ORDER:
        flavor = get_flavor(name)
        if flavor.detect(path):
            return flavor
    raise FlavorDetectionError(repr(path.name))

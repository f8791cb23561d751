"""Reading MLflow's model format (the ``MLmodel`` file) without MLflow.

Only what serving needs: the ``flavors`` section, the ``signature`` and the saved input
example. The format is documented at https://mlflow.org/docs/latest/models.html.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelhost.entities import ColumnSpec, ColumnType, Signature, Spec, TensorSpec
from modelhost.errors import InvalidInputError, ModelLoadError, PathEscapeError
from modelhost.flavors._files import child, load_failed

MLMODEL = "MLmodel"
WHAT = "the MLflow model"
# MLflow column types that are ours too, by the same name.
_COLUMN_TYPES = {t.value: t for t in ColumnType}
# How an input example column is cast back from JSON, by signature type.
_PANDAS_DTYPES = {"double": "float64", "float": "float32", "long": "int64",
                  "integer": "int32", "boolean": "bool"}


def read_mlmodel(folder: Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of ``folder`` (``yaml.safe_load``: no code runs).

    Raises:
        PathEscapeError: ``MLmodel`` is a symbolic link.
        ModelLoadError: missing, not YAML, or without a ``flavors`` mapping.
    """
    import yaml

    file = folder / MLMODEL
    if file.is_symlink():
        raise PathEscapeError(MLMODEL)
    if not file.is_file():
        raise ModelLoadError(WHAT, "the folder has no MLmodel file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise load_failed(WHAT, exc) from exc
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise ModelLoadError(WHAT, "its MLmodel file has no 'flavors' section")
    return data


def read_signature(mlmodel: Mapping[str, Any]) -> Signature | None:
    """The MLmodel ``signature`` as ours, or None without one.

    MLflow stores ``inputs``/``outputs`` as JSON strings of column specs
    ``{"type", "name", "required"}`` or tensor specs
    ``{"type": "tensor", "tensor-spec": {"dtype", "shape"}}``. ``params`` are ignored.

    Raises:
        InvalidInputError: a column type modelhost does not support (``binary``, arrays,
            objects, maps).
        ModelLoadError: malformed signature.
    """
    raw = mlmodel.get("signature")
    if not isinstance(raw, Mapping):
        return None
    inputs = _specs(raw.get("inputs"), "input")
    outputs = _specs(raw.get("outputs"), "output")
    if not inputs and not outputs:
        return None
    for side in (inputs, outputs):
        if len({type(s) for s in side}) > 1:
            raise ModelLoadError(WHAT, "its signature mixes columns and tensors")
    return Signature(inputs=tuple(inputs), outputs=tuple(outputs))


def _specs(raw: object, side: str) -> list[Spec]:
    if raw is None:
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise load_failed(WHAT, exc) from exc
    if not isinstance(raw, list):
        raise ModelLoadError(WHAT, f"its signature {side}s are not a list")
    return [_spec(item, index, side) for index, item in enumerate(raw)]


def _spec(item: object, index: int, side: str) -> Spec:
    if not isinstance(item, Mapping):
        raise ModelLoadError(WHAT, f"its signature {side} #{index} is not an object")
    kind = item.get("type")
    name = item.get("name")
    try:
        if kind == "tensor":
            tensor = item["tensor-spec"]
            return TensorSpec(dtype=str(tensor["dtype"]),
                              shape=tuple(int(d) for d in tensor["shape"]),
                              name=None if name is None else str(name))
        if isinstance(kind, str) and kind in _COLUMN_TYPES:
            # MLflow allows unnamed columns (inputs by position); name them by position.
            return ColumnSpec(name=str(index) if name is None else str(name),
                              type=_COLUMN_TYPES[kind],
                              required=bool(item.get("required", True)))
    except (KeyError, TypeError, ValueError) as exc:
        raise load_failed(WHAT, exc) from exc
    label = repr(name) if name is not None else f"#{index}"
    raise InvalidInputError(
        f"the MLflow signature {side} {label} has type {kind!r}, which modelhost does not "
        f"support; supported: {', '.join(_COLUMN_TYPES)} and tensors. Re-save the model "
        "with a signature of those types"
    )


def read_input_example(
    folder: Path, mlmodel: Mapping[str, Any], signature: Signature | None
) -> Any:
    """The saved input example as a DataFrame, an ndarray or a dict of ndarrays.

    Examples of other kinds (``json_object``, sparse matrices) give None: an example is
    a convenience, not part of the model.

    Raises:
        PathEscapeError: the example path leaves the folder.
        ModelLoadError: the example file is missing or not JSON.
    """
    info = mlmodel.get("saved_input_example_info")
    if not isinstance(info, Mapping) or info.get("type") not in ("dataframe", "ndarray"):
        return None
    file = child(folder, info.get("artifact_path", "input_example.json"), what=WHAT)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise load_failed(WHAT, exc) from exc
    # Examples saved with params, and ndarrays from older MLflow, wrap the data.
    if isinstance(data, dict) and "inputs" in data and (info.get("params") or len(data) == 1):
        data = data["inputs"]
    try:
        if info["type"] == "dataframe":
            return _frame(data, str(info.get("pandas_orient", "split")), signature)
        return _arrays(data, signature)
    except (KeyError, TypeError, ValueError) as exc:
        raise load_failed(WHAT, exc) from exc


def _frame(data: Any, orient: str, signature: Signature | None) -> Any:
    import pandas as pd

    if orient == "split" and isinstance(data, Mapping):
        frame = pd.DataFrame(data["data"], columns=data.get("columns"))
    elif orient == "records":
        frame = pd.DataFrame.from_records(data)
    else:
        frame = pd.DataFrame(data)
    if signature is None:
        return frame
    for spec in signature.columns:
        if spec.name not in frame.columns:
            continue
        try:
            if spec.type is ColumnType.DATETIME:
                frame[spec.name] = pd.to_datetime(frame[spec.name])
            elif spec.type.value in _PANDAS_DTYPES:
                frame[spec.name] = frame[spec.name].astype(_PANDAS_DTYPES[spec.type.value])
        except (TypeError, ValueError):
            continue  # nulls in an integer column, say: keep JSON's types
    return frame


def _arrays(data: Any, signature: Signature | None) -> Any:
    import numpy as np

    tensors = {s.name: s for s in signature.inputs
               if isinstance(s, TensorSpec)} if signature else {}
    if isinstance(data, Mapping):
        return {str(k): _array(v, tensors.get(str(k))) for k, v in data.items()}
    only = next(iter(tensors.values())) if len(tensors) == 1 else None
    return _array(data, only) if only is not None else np.asarray(data)


def _array(values: Any, spec: TensorSpec | None) -> Any:
    import numpy as np

    if spec is None:
        return np.asarray(values)
    try:
        return np.asarray(values, dtype=spec.dtype)
    except (TypeError, ValueError):
        return np.asarray(values)

"""The ``onnx`` flavor: ONNX graphs run with onnxruntime on the CPU.

ONNX files hold no code, so they need no trust flag. Stored as ``model.onnx`` with
``meta = {"format": "onnx", "file": "model.onnx", "intra_op_num_threads": 1,
"inputs": [...], "outputs": [...], "classes": [...] | None}``.

Sessions use one intra-op thread by default: a server runs many models and many requests
in parallel, and onnxruntime's default (one thread per core, per session) oversubscribes
the CPU. Change it per flavor instance or per version (``meta``).

:func:`convert_sklearn` turns a scikit-learn model into a graph with one float tensor input
``X`` and, for classifiers, a probability tensor (not a ZipMap).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelhost.errors import InvalidInputError, MissingDependencyError, ModelLoadError
from modelhost.flavors._files import child, read_bytes, reason, require_source, staged
from modelhost.flavors._predictor import is_sklearn_estimator
from modelhost.flavors.base import Flavor, LoadedModel, SavedModel

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ONNX_FILE = "model.onnx"
CLASSES_KEY = "modelhost.classes"  # model metadata entry written by convert_sklearn
_WHAT = "the ONNX model"
_ORT_NOISE = re.compile(
    r"\[ONNXRuntimeError\] : \d+ : |\S+\.cc:\d+\s+|onnxruntime::[^\s(]+\([^)]*\)\s*"
)
_NUMPY_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint64)": "uint64", "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
    "tensor(string)": "str",
}


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("the onnx flavor", "onnx") from exc
    return onnxruntime


def make_session(
    data: bytes | Path, *, intra_op_num_threads: int = 1, what: str = _WHAT
) -> Any:
    """An onnxruntime CPU session for a serialized model, or a model file.

    A file lets onnxruntime find external tensor data stored next to it.

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        ModelLoadError: the bytes are not a model onnxruntime can run.
    """
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_num_threads
    options.log_severity_level = 3  # errors only; failures reach the caller as exceptions
    try:
        source = str(data) if isinstance(data, Path) else data
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        # onnxruntime prefixes its messages with C++ source locations and signatures.
        raise ModelLoadError(what, reason(exc, _ORT_NOISE.sub("", str(exc)))) from exc


class OnnxModel(LoadedModel):
    """Runs an onnxruntime session on a batch.

    Inputs: one graph input gets the whole batch as a 2-D array (a DataFrame's columns in
    their order); several graph inputs get one DataFrame column, mapping entry or array
    column each, matched by name (arrays by position). Values are cast to the input's
    element type.

    Outputs: the first is the prediction; the first other output whose name contains
    "probab" (``probabilities``, ``output_probability``) gives the probabilities, a
    ZipMap (list of dicts) becoming columns in sorted class order.
    """

    def __init__(self, session: Any, *, classes: list[Any] | None = None) -> None:
        self._session = session
        self._inputs = [(i.name, _NUMPY_DTYPES.get(i.type), len(i.shape or ()))
                        for i in session.get_inputs()]
        outputs = session.get_outputs()
        self._label = outputs[0].name
        self._proba = next((o.name for o in outputs[1:] if "probab" in o.name.lower()), None)
        if classes is None:
            stored = session.get_modelmeta().custom_metadata_map.get(CLASSES_KEY)
            try:
                classes = json.loads(stored) if stored else None
            except ValueError:  # metadata written by someone else: labels are optional
                classes = None
            if classes is not None and not isinstance(classes, list):
                classes = None
        self._classes = classes

    def predict(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> np.ndarray:
        import numpy as np

        labels = np.asarray(self._run(X, self._label))
        # Regressors converted by skl2onnx answer (n, 1); the contract is one value per row.
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        return labels

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> np.ndarray | None:
        import numpy as np

        if self._proba is None:
            return None
        proba = self._run(X, self._proba)
        if isinstance(proba, list):  # ZipMap: one {class: probability} dict per row
            labels = sorted(proba[0]) if proba else (self._classes or [])
            return np.array([[row[c] for c in labels] for row in proba], dtype=np.float64)
        return np.asarray(proba, dtype=np.float64)

    @property
    def has_proba(self) -> bool:
        return self._proba is not None

    def accepts_array(self, columns: list[str]) -> bool:
        # One 2-D input takes a DataFrame's columns in their order: an array in that
        # same order is the identical input.
        return len(self._inputs) == 1 and self._inputs[0][2] == 2

    def predict_with_proba(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if self._proba is None:
            return self.predict(X), None
        import numpy as np

        labels, proba = self._run_many(X, [self._label, self._proba])  # one session run
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if isinstance(proba, list):
            names = sorted(proba[0]) if proba else (self._classes or [])
            return labels, np.array([[row[c] for c in names] for row in proba],
                                    dtype=np.float64)
        return labels, np.asarray(proba, dtype=np.float64)

    @property
    def classes(self) -> list[Any] | None:
        return self._classes

    def _run(self, data: Any, output: str) -> Any:
        (result,) = self._run_many(data, [output])
        return result

    def _run_many(self, data: Any, outputs: list[str]) -> list[Any]:
        feeds = self._feeds(data)
        ort = _onnxruntime()
        try:
            return list(self._session.run(outputs, feeds))
        except ort.capi.onnxruntime_pybind11_state.InvalidArgument as exc:
            raise InvalidInputError(f"the ONNX model rejected the input: {reason(exc)}") from exc

    def _feeds(self, data: Any) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        names = [name for name, _, _ in self._inputs]
        if len(self._inputs) == 1:
            name, dtype, rank = self._inputs[0]
            if isinstance(data, Mapping):
                values = data[name] if name in data else _stack_columns(list(data.values()))
            elif isinstance(data, pd.DataFrame):
                values = data.to_numpy()
            else:
                values = np.asarray(data)
            values = np.asarray(values)
            if rank == 2 and values.ndim == 1:
                raise InvalidInputError(
                    f"the ONNX model expects a 2-D batch (rows x columns) for input "
                    f"{name!r}; got a 1-D array"
                )
            return {name: _cast(values, dtype, name)}
        if isinstance(data, pd.DataFrame | Mapping):
            keys = list(data.columns) if isinstance(data, pd.DataFrame) else list(data)
            missing = [n for n in names if n not in keys]
            if missing:
                raise InvalidInputError(
                    f"the ONNX model needs the inputs {', '.join(map(repr, names))}; "
                    f"missing {', '.join(map(repr, missing))}"
                )
            columns = {n: np.asarray(data[n]) for n in names}
        else:
            array = np.asarray(data)
            if array.ndim != 2 or array.shape[1] != len(names):
                raise InvalidInputError(
                    f"the ONNX model has {len(names)} inputs ({', '.join(map(repr, names))}); "
                    f"pass a table with those columns or a 2-D array with {len(names)} columns"
                )
            columns = {n: array[:, i] for i, n in enumerate(names)}
        feeds = {}
        for name, dtype, rank in self._inputs:
            values = columns[name]
            if rank == 2 and values.ndim == 1:
                values = values.reshape(-1, 1)
            feeds[name] = _cast(values, dtype, name)
        return feeds


def _stack_columns(values: list[Any]) -> Any:
    import numpy as np

    arrays = [np.asarray(v) for v in values]
    if len(arrays) == 1:
        return arrays[0]
    return np.column_stack(arrays)


def _cast(values: np.ndarray, dtype: str | None, name: str) -> np.ndarray:
    if dtype is None or values.dtype == dtype:
        return values
    try:
        return values.astype(dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"input {name!r} of the ONNX model needs {dtype} values: {reason(exc)}"
        ) from exc


def _describe(args: Any) -> list[dict[str, Any]]:
    return [{"name": a.name, "type": a.type,
             "shape": [d if isinstance(d, int | str) else None for d in (a.shape or ())]}
            for a in args]


def classes_from_graph(data: bytes) -> list[Any] | None:
    """Class labels from the graph's classifier or ZipMap node, when onnx is installed."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        return None
    try:
        proto = onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001  # labels are optional; any parse failure means none
        return None
    found: list[Any] | None = None
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.name.startswith("classlabels_"):
                labels = [v.decode() if isinstance(v, bytes) else v
                          for v in helper.get_attribute_value(attr)]
                if node.op_type == "ZipMap":
                    return sorted(labels)
                if found is None:
                    found = labels
    return found


class OnnxFlavor(Flavor):
    """``onnx.ModelProto`` objects and ``.onnx`` files."""

    name: ClassVar[str] = "onnx"

    def __init__(self, *, intra_op_num_threads: int = 1) -> None:
        self.intra_op_num_threads = intra_op_num_threads

    def can_save(self, model: object) -> bool:
        # Only an imported onnx module can have made a ModelProto.
        onnx = sys.modules.get("onnx")
        return onnx is not None and isinstance(model, onnx.ModelProto)

    def save(self, model: object, dest: Path) -> SavedModel:
        """Write an ``onnx.ModelProto`` as ``model.onnx`` after checking it runs.

        Raises:
            InvalidInputError: not a ModelProto.
            ModelLoadError: onnxruntime cannot run it.
            MissingDependencyError: onnxruntime is not installed.
        """
        if not self.can_save(model):
            raise InvalidInputError(
                f"the onnx flavor saves onnx.ModelProto objects, not {type(model).__name__}; "
                "convert scikit-learn models with modelhost.flavors.onnx.convert_sklearn"
            )
        data: bytes = model.SerializeToString()  # type: ignore[attr-defined]
        return self._write(data, dest)

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() == ".onnx" and not path.is_dir()

    def import_path(self, src: Path, dest: Path, *, trust_pickle: bool = False) -> SavedModel:
        """Copy a ``.onnx`` file after checking that onnxruntime can run it."""
        require_source(src)
        if src.suffix.lower() != ".onnx":
            raise InvalidInputError(f"the onnx flavor imports .onnx files, not {src.name!r}")
        return self._write(read_bytes(src, what=_WHAT), dest)

    def load(
        self, src: Path, meta: Mapping[str, Any], *, trust_pickle: bool = False
    ) -> OnnxModel:
        file = child(src, meta.get("file"), what=_WHAT)
        threads = meta.get("intra_op_num_threads", self.intra_op_num_threads)
        if not isinstance(threads, int) or threads < 0:
            raise ModelLoadError(_WHAT, f"invalid intra_op_num_threads {threads!r}")
        session = make_session(read_bytes(file, what=_WHAT), intra_op_num_threads=threads)
        classes = meta.get("classes")
        return OnnxModel(session, classes=list(classes) if isinstance(classes, list) else None)

    def _write(self, data: bytes, dest: Path) -> SavedModel:
        session = make_session(data, intra_op_num_threads=self.intra_op_num_threads)
        loaded = OnnxModel(session)
        if loaded.classes is None:  # not converted by convert_sklearn: ask the graph
            loaded = OnnxModel(session, classes=classes_from_graph(data))
        meta: dict[str, Any] = {
            "format": "onnx", "file": ONNX_FILE,
            "intra_op_num_threads": self.intra_op_num_threads,
            "inputs": _describe(session.get_inputs()),
            "outputs": _describe(session.get_outputs()),
            "classes": loaded.classes if loaded.has_proba else None,
        }
        with staged(dest):
            (dest / ONNX_FILE).write_bytes(data)
        return SavedModel(meta=meta)


def convert_sklearn(model: object, sample: pd.DataFrame | np.ndarray) -> Any:
    """Convert a fitted scikit-learn model or pipeline to an ``onnx.ModelProto``.

    The graph has one float tensor input named ``X`` with ``sample``'s column count, and
    classifiers output probabilities as a tensor (``zipmap`` off). The class labels are
    stored in the graph's metadata under ``modelhost.classes``.

    Args:
        model: a fitted estimator or pipeline whose input is all numeric.
        sample: a few training rows (DataFrame or 2-D array); only the shape is used.

    Raises:
        MissingDependencyError: skl2onnx is not installed.
        InvalidInputError: non-numeric sample, or skl2onnx cannot convert the model.
    """
    import numpy as np
    import pandas as pd

    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.base import is_classifier
    except ImportError as exc:
        raise MissingDependencyError("converting scikit-learn models to ONNX", "onnx") from exc
    array = sample.to_numpy() if isinstance(sample, pd.DataFrame) else np.asarray(sample)
    if array.ndim != 2:
        raise InvalidInputError(f"convert_sklearn needs a 2-D sample; got {array.ndim}-D")
    try:
        array.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            "convert_sklearn builds one float tensor input 'X', but the sample has "
            "non-numeric values; encode them first or convert with skl2onnx directly"
        ) from exc
    if not is_sklearn_estimator(model):
        raise InvalidInputError(
            f"convert_sklearn converts scikit-learn estimators, not {type(model).__name__}"
        )
    final: Any = model
    while hasattr(final, "steps"):  # the classifier at the end of (nested) pipelines
        final = final.steps[-1][1]
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    try:
        proto = to_onnx(model, initial_types=[("X", FloatTensorType([None, array.shape[1]]))],
                        options=options)
    except Exception as exc:
        raise InvalidInputError(
            f"skl2onnx cannot convert this {type(model).__name__}: {reason(exc)}"
        ) from exc
    classes = getattr(model, "classes_", None)
    if classes is not None and not isinstance(classes, list):
        entry = proto.metadata_props.add()
        entry.key, entry.value = CLASSES_KEY, json.dumps(np.asarray(classes).tolist())
    return proto

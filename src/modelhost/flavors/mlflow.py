"""The ``mlflow`` flavor: folders in MLflow's model format, served without MLflow.

Reads the ``MLmodel`` file and loads the model through one of its flavors:

* ``sklearn`` with ``serialization_format`` ``skops`` (file ``pickled_model``), or
  ``pickle``/``cloudpickle`` (need ``trust_pickle``; cloudpickle payloads need the
  cloudpickle package);
* ``onnx`` (file ``data``), run with onnxruntime;
* ``python_function`` whose ``loader_module`` is ``mlflow.sklearn`` or ``mlflow.onnx``.

The ``skops_trusted_types`` list inside ``MLmodel`` is not trusted: it is written by the
same hand as the file it would unlock. Types outside skops' safe list need
``trust_pickle``, as for a ``.skops`` file. MLflow's ``code`` folders are not added to
``sys.path``: custom classes must be importable where modelhost runs.

The whole folder is stored; ``meta`` records the inner flavor and file:
``{"format": "mlflow", "inner": "sklearn" | "onnx", "file": ..., ...}``.

This module never imports mlflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from modelhost.errors import InvalidInputError, ModelLoadError, UntrustedArtifactError
from modelhost.flavors._files import (
    check_tree,
    child,
    copy_tree,
    read_bytes,
    require_source,
    staged,
)
from modelhost.flavors._mlmodel import (
    MLMODEL,
    WHAT,
    read_input_example,
    read_mlmodel,
    read_signature,
)
from modelhost.flavors._predictor import ObjectModel, has_predict
from modelhost.flavors._serialize import (
    load_pickle,
    load_skops,
    require_trusted_types,
    untrusted_types,
)
from modelhost.flavors.base import Flavor, LoadedModel, SavedModel
from modelhost.flavors.onnx import OnnxModel, classes_from_graph, make_session

_SERIALIZATIONS = ("skops", "pickle", "cloudpickle")
_LOADERS = {"mlflow.sklearn": "sklearn", "mlflow.onnx": "onnx"}


def _inner(flavors: Mapping[str, Any]) -> tuple[str, Mapping[str, Any], object]:
    """(inner flavor, its MLmodel section, model file) for the flavors we can serve."""
    for name in ("sklearn", "onnx"):
        conf = flavors.get(name)
        if isinstance(conf, Mapping):
            return name, conf, conf.get("pickled_model" if name == "sklearn" else "data")
    pyfunc = flavors.get("python_function")
    if isinstance(pyfunc, Mapping) and pyfunc.get("loader_module") in _LOADERS:
        inner = _LOADERS[pyfunc["loader_module"]]
        file = pyfunc.get("model_path") if inner == "sklearn" else pyfunc.get("data")
        # Without an sklearn section MLflow itself assumes pickle; a .skops name says skops.
        fmt = "skops" if str(file).endswith(".skops") else "pickle"
        return inner, {"serialization_format": fmt}, file
    found = ", ".join(sorted(str(f) for f in flavors)) or "none"
    loader = pyfunc.get("loader_module") if isinstance(pyfunc, Mapping) else None
    detail = f" (python_function loader {loader!r})" if loader else ""
    raise ModelLoadError(
        WHAT,
        f"its MLmodel has the flavors {found}{detail}; modelhost serves MLflow's 'sklearn' "
        "and 'onnx' flavors without MLflow. Save the model with mlflow.sklearn or "
        "mlflow.onnx, or export it to ONNX and register the .onnx file",
    )


class MlflowFlavor(Flavor):
    """Folders written by ``mlflow.sklearn.save_model`` or ``mlflow.onnx.save_model``."""

    name: ClassVar[str] = "mlflow"

    def __init__(self, *, intra_op_num_threads: int = 1) -> None:
        self.intra_op_num_threads = intra_op_num_threads

    def can_save(self, model: object) -> bool:
        """Always False: MLflow models are registered from their folder."""
        return False

    def save(self, model: object, dest: Path) -> SavedModel:
        """Not supported: raises ``InvalidInputError`` pointing at :meth:`import_path`."""
        raise InvalidInputError(
            "the mlflow flavor registers folders written by MLflow (mlflow.sklearn."
            "save_model, mlflow.onnx.save_model); register the folder's path, or register "
            "the Python object with the sklearn, onnx or python flavor"
        )

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / MLMODEL).is_file()

    def import_path(self, src: Path, dest: Path, *, trust_pickle: bool = False) -> SavedModel:
        """Copy an MLflow model folder into ``dest`` after checking that it loads.

        Returns the MLmodel's signature and input example with the meta.

        Raises:
            PathEscapeError: a symbolic link in the folder, or a file named outside it.
            UntrustedArtifactError: pickle-based, or skops with types outside skops' safe
                list, without ``trust_pickle``; checked before anything is copied.
            InvalidInputError: a signature type modelhost does not support.
            ModelLoadError: no MLmodel, a flavor modelhost cannot serve, or files that do
                not load.
        """
        require_source(src)
        if not self.detect(src):
            raise ModelLoadError(WHAT, "expected a folder with an MLmodel file")
        check_tree(src, what=WHAT)
        mlmodel = read_mlmodel(src)
        meta = self._plan(src, mlmodel, trust_pickle=trust_pickle)
        signature = read_signature(mlmodel)
        example = read_input_example(src, mlmodel, signature)
        with staged(dest):
            copy_tree(src, dest, what=WHAT)
            self.load(dest, meta)
        return SavedModel(meta=meta, signature=signature, input_example=example)

    def load(
        self, src: Path, meta: Mapping[str, Any], *, trust_pickle: bool = False
    ) -> LoadedModel:
        inner = meta.get("inner")
        file = child(src, meta.get("file"), what=WHAT)
        if inner == "onnx":
            threads = meta.get("intra_op_num_threads", self.intra_op_num_threads)
            if not isinstance(threads, int) or threads < 0:
                raise ModelLoadError(WHAT, f"invalid intra_op_num_threads {threads!r}")
            # From the file, so that onnxruntime finds external tensor data next to it.
            session = make_session(file, intra_op_num_threads=threads, what=WHAT)
            classes = meta.get("classes")
            return OnnxModel(session, classes=classes if isinstance(classes, list) else None)
        if inner != "sklearn":
            raise ModelLoadError(WHAT, f"unknown inner flavor {inner!r}")
        fmt = meta.get("serialization_format")
        if fmt == "skops":
            obj = load_skops(file, meta.get("trusted_types"), what=WHAT)
        elif fmt in ("pickle", "cloudpickle"):
            if not (trust_pickle or meta.get("pickle_trusted") is True):
                raise UntrustedArtifactError(f"an MLflow model saved with {fmt}")
            obj = load_pickle(file, "pickle" if fmt == "pickle" else "cloudpickle", what=WHAT)
        else:
            raise ModelLoadError(WHAT, f"unknown serialization format {fmt!r}")
        if not has_predict(obj):
            raise ModelLoadError(WHAT, f"the file holds a {type(obj).__name__} without predict")
        return ObjectModel(obj)

    def _plan(
        self, src: Path, mlmodel: Mapping[str, Any], *, trust_pickle: bool
    ) -> dict[str, Any]:
        """The meta for this folder; refuses untrusted formats before anything loads."""
        flavors: Mapping[str, Any] = mlmodel["flavors"]
        inner, conf, relative = _inner(flavors)
        file = child(src, relative, what=WHAT)
        meta: dict[str, Any] = {
            "format": "mlflow", "inner": inner, "file": str(relative),
            "mlflow_flavors": sorted(str(f) for f in flavors),
            "mlflow_version": str(mlmodel.get("mlflow_version") or "") or None,
        }
        if inner == "onnx":
            meta["intra_op_num_threads"] = self.intra_op_num_threads
            meta["classes"] = classes_from_graph(read_bytes(file, what=WHAT))
            return meta
        fmt = conf.get("serialization_format", "pickle")
        if fmt not in _SERIALIZATIONS:
            raise ModelLoadError(WHAT, f"unknown sklearn serialization format {fmt!r}")
        meta["serialization_format"] = fmt
        version = conf.get("sklearn_version")
        meta["sklearn_version"] = None if version is None else str(version)
        if fmt == "skops":
            types = untrusted_types(file, what=WHAT)
            require_trusted_types(types, trust_pickle=trust_pickle)
            meta["trusted_types"] = types
        elif not trust_pickle:
            raise UntrustedArtifactError(f"an MLflow model saved with {fmt}")
        else:
            meta["pickle_trusted"] = True
        return meta

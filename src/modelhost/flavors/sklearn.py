"""The ``sklearn`` flavor: scikit-learn estimators and pipelines, stored with skops.

Stored formats (``meta["format"]``):

* ``skops`` (the default): ``model.skops`` loaded with ``trusted=meta["trusted_types"]``.
* ``pickle``: a trusted pickle or joblib file that skops could not re-save; loading it
  needs ``meta["pickle_trusted"]`` (set when it was imported with trust) or
  ``trust_pickle``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from modelhost.errors import InvalidInputError, ModelLoadError, UntrustedArtifactError
from modelhost.flavors._files import child, require_source, staged
from modelhost.flavors._predictor import ObjectModel, is_sklearn_estimator, is_sklearn_like
from modelhost.flavors._serialize import (
    DumpError,
    dump_skops,
    load_pickle,
    load_skops,
    require_trusted_types,
    untrusted_types,
)
from modelhost.flavors.base import Flavor, SavedModel

SKOPS_FILE = "model.skops"
SKOPS_SUFFIXES = (".skops",)
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
_WHAT = "the scikit-learn model"


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def _check_estimator(obj: object) -> None:
    if not is_sklearn_like(obj):
        raise ModelLoadError(
            _WHAT,
            f"the file holds a {type(obj).__name__}, not a scikit-learn estimator or "
            "pipeline with predict",
        )


def _skops_meta(types: list[str]) -> dict[str, Any]:
    return {"format": "skops", "file": SKOPS_FILE, "trusted_types": types,
            "sklearn_version": _sklearn_version()}


class SklearnFlavor(Flavor):
    """scikit-learn models saved with skops; pickles accepted only with trust."""

    name: ClassVar[str] = "sklearn"

    def can_save(self, model: object) -> bool:
        return is_sklearn_estimator(model) and callable(getattr(model, "predict", None))

    def save(self, model: object, dest: Path) -> SavedModel:
        """Save with skops, trusting the types of the object handed over.

        Raises:
            InvalidInputError: not an estimator with predict, or skops cannot save it.
        """
        if not self.can_save(model):
            raise InvalidInputError(
                f"the sklearn flavor saves scikit-learn estimators with predict, not "
                f"{type(model).__name__}; use the python flavor for other objects"
            )
        with staged(dest):
            try:
                types = dump_skops(model, dest / SKOPS_FILE)
            except DumpError as exc:
                raise InvalidInputError(
                    f"skops cannot save this {type(model).__name__}: {exc}. Convert it to "
                    "ONNX, or register it with the python flavor as an import path "
                    "'package.module:attr'"
                ) from exc
        return SavedModel(meta=_skops_meta(types))

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() in SKOPS_SUFFIXES + PICKLE_SUFFIXES and not path.is_dir()

    def import_path(self, src: Path, dest: Path, *, trust_pickle: bool = False) -> SavedModel:
        """Import a ``.skops`` file, or with trust a ``.joblib``/``.pkl``/``.pickle`` one.

        A trusted pickle is re-saved with skops when skops can, so that the stored
        artifact never needs pickle again; otherwise it is kept as it is.
        """
        require_source(src)
        suffix = src.suffix.lower()
        if suffix in SKOPS_SUFFIXES:
            return self._import_skops(src, dest, trust_pickle=trust_pickle)
        if suffix in PICKLE_SUFFIXES:
            if not trust_pickle:
                raise UntrustedArtifactError("a pickle file")
            return self._import_pickle(src, dest)
        raise InvalidInputError(
            f"the sklearn flavor imports .skops, .joblib, .pkl and .pickle files, not "
            f"{src.name!r}"
        )

    def load(
        self, src: Path, meta: Mapping[str, Any], *, trust_pickle: bool = False
    ) -> ObjectModel:
        fmt = meta.get("format")
        file = child(src, meta.get("file"), what=_WHAT)
        if fmt == "skops":
            obj = load_skops(file, meta.get("trusted_types"), what=_WHAT)
        elif fmt == "pickle":
            if not (trust_pickle or meta.get("pickle_trusted") is True):
                raise UntrustedArtifactError("a pickle file")
            obj = load_pickle(file, "joblib", what=_WHAT)
        else:
            raise ModelLoadError(_WHAT, f"unknown stored format {fmt!r}")
        _check_estimator(obj)
        return ObjectModel(obj)

    # --- imports -------------------------------------------------------------------

    def _import_skops(self, src: Path, dest: Path, *, trust_pickle: bool) -> SavedModel:
        types = untrusted_types(src, what=_WHAT)
        require_trusted_types(types, trust_pickle=trust_pickle)
        with staged(dest):
            target = dest / SKOPS_FILE
            shutil.copyfile(src, target)
            meta = _skops_meta(types)
            self.load(dest, meta)
        return SavedModel(meta=meta)

    def _import_pickle(self, src: Path, dest: Path) -> SavedModel:
        obj = load_pickle(src, "joblib", what=_WHAT)
        _check_estimator(obj)
        with staged(dest):
            try:
                types = dump_skops(obj, dest / SKOPS_FILE)
            except DumpError:
                # skops cannot hold this object: keep the trusted pickle as it is.
                (dest / SKOPS_FILE).unlink(missing_ok=True)
                name = "model" + src.suffix.lower()
                shutil.copyfile(src, dest / name)
                meta = {"format": "pickle", "file": name, "pickle_trusted": True,
                        "sklearn_version": _sklearn_version()}
                self.load(dest, meta)
                return SavedModel(meta=meta)
        return SavedModel(meta=_skops_meta(types))

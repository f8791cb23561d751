"""The ``python`` flavor: any object with ``predict``.

Stored formats (``meta["format"]``):

* ``skops``: the object itself, in ``model.skops``, loaded with
  ``trusted=meta["trusted_types"]`` (the types of the object handed to :meth:`save`).
* ``import``: no file; ``meta["target"]`` is ``"package.module:attr"``. Loading imports
  the module, takes the attribute, and instantiates it with no arguments if it is a
  class. For objects skops cannot store (open connections, lambdas, C extensions).

Never detected from a path: a ``.skops`` file is the sklearn flavor's unless the user
asks for this one.
"""

from __future__ import annotations

import importlib
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from modelhost.errors import InvalidInputError, ModelLoadError
from modelhost.flavors._files import child, load_failed, require_source, staged
from modelhost.flavors._predictor import ObjectModel, has_predict
from modelhost.flavors._serialize import (
    DumpError,
    dump_skops,
    load_skops,
    require_trusted_types,
    untrusted_types,
)
from modelhost.flavors.base import Flavor, SavedModel

SKOPS_FILE = "model.skops"
_WHAT = "the python model"
# Dotted module, a colon, dotted attribute; ASCII identifiers only.
_TARGET = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", re.ASCII)


def is_import_target(value: object) -> bool:
    """Whether ``value`` is a string of the form ``package.module:attr``."""
    return isinstance(value, str) and _TARGET.fullmatch(value) is not None


def resolve_target(target: str) -> Any:
    """Import ``package.module:attr``; instantiate it if it is a class.

    Importing runs the module's code: targets name code installed where modelhost runs,
    chosen by whoever registered the model.

    Raises:
        InvalidInputError: ``target`` is not of the form ``package.module:attr``.
        ModelLoadError: the import fails, or the result has no ``predict``.
    """
    if not is_import_target(target):
        raise InvalidInputError(
            f"invalid import path {target!r}: expected 'package.module:attr', "
            "e.g. 'churn.model:ChurnModel'"
        )
    what = f"{_WHAT} {target!r}"
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
        if isinstance(obj, type):
            obj = obj()
    except Exception as exc:
        raise load_failed(what, exc) from exc
    if not has_predict(obj):
        raise ModelLoadError(what, f"it gives a {type(obj).__name__}, which has no predict")
    return obj


class PythonFlavor(Flavor):
    """Objects with ``predict``, stored with skops or as an import path."""

    name: ClassVar[str] = "python"

    def can_save(self, model: object) -> bool:
        return is_import_target(model) or has_predict(model)

    def save(self, model: object, dest: Path) -> SavedModel:
        """Save an object with skops, or record an import path ``"package.module:attr"``.

        The import path is resolved once here so that a typo fails at registration,
        not when the model is first served.

        Raises:
            InvalidInputError: no ``predict``, a malformed import path, or an object
                skops cannot store (the message suggests an import path).
            ModelLoadError: the import path does not import or has no ``predict``.
        """
        if isinstance(model, str):
            resolve_target(model)
            dest.mkdir(parents=True, exist_ok=True)
            return SavedModel(meta={"format": "import", "target": model})
        if not has_predict(model):
            raise InvalidInputError(
                f"the python flavor saves objects with a predict method; "
                f"{type(model).__name__} has none"
            )
        with staged(dest):
            try:
                types = dump_skops(model, dest / SKOPS_FILE)
            except DumpError as exc:
                cls = type(model)
                raise InvalidInputError(
                    f"skops cannot save this {cls.__name__}: {exc}. Register it by import "
                    f"path instead, e.g. '{cls.__module__}:{cls.__qualname__}', with a "
                    "class that builds the model without arguments"
                ) from exc
        return SavedModel(meta=self._skops_meta(model, types))

    def detect(self, path: Path) -> bool:
        """Always False: the python flavor is chosen explicitly, never guessed."""
        return False

    def import_path(self, src: Path, dest: Path, *, trust_pickle: bool = False) -> SavedModel:
        """Import a ``.skops`` file holding an object with ``predict``.

        Types outside skops' safe list (any user class) need ``trust_pickle``.
        """
        require_source(src)
        if src.suffix.lower() != ".skops":
            raise InvalidInputError(
                f"the python flavor imports .skops files, not {src.name!r}; for other "
                "objects register an import path 'package.module:attr'"
            )
        types = untrusted_types(src, what=_WHAT)
        require_trusted_types(types, trust_pickle=trust_pickle)
        with staged(dest):
            shutil.copyfile(src, dest / SKOPS_FILE)
            meta = {"format": "skops", "file": SKOPS_FILE, "trusted_types": types}
            loaded = self.load(dest, meta)
        return SavedModel(meta=self._skops_meta(loaded.model, types))

    def load(
        self, src: Path, meta: Mapping[str, Any], *, trust_pickle: bool = False
    ) -> ObjectModel:
        fmt = meta.get("format")
        if fmt == "import":
            target = meta.get("target")
            if not isinstance(target, str):
                raise ModelLoadError(_WHAT, "its metadata has no import path")
            return ObjectModel(resolve_target(target))
        if fmt != "skops":
            raise ModelLoadError(_WHAT, f"unknown stored format {fmt!r}")
        obj = load_skops(child(src, meta.get("file"), what=_WHAT), meta.get("trusted_types"),
                         what=_WHAT)
        if not has_predict(obj):
            raise ModelLoadError(_WHAT, f"the file holds a {type(obj).__name__} without predict")
        return ObjectModel(obj)

    @staticmethod
    def _skops_meta(model: object, types: list[str]) -> dict[str, Any]:
        cls = type(model)
        return {"format": "skops", "file": SKOPS_FILE, "trusted_types": types,
                "class": f"{cls.__module__}.{cls.__qualname__}"}

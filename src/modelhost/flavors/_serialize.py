"""Reading and writing Python objects: skops (safe by default) and pickle (trusted only).

skops refuses to build any type outside its safe list unless that type is named in
``trusted``. Which types to trust is decided by the flavors: the types of an object the
registrant hands over are trusted (they built it); the types found in a file from disk
are trusted only with ``trust_pickle``; the list inside an MLflow ``MLmodel`` file is never
trusted, because the file that needs the permission also grants it.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from modelhost.errors import MissingDependencyError, UntrustedTypesError
from modelhost.flavors._files import load_failed, reason

PickleKind = Literal["joblib", "pickle", "cloudpickle"]


class DumpError(Exception):
    """skops could not write or read back an object; ``str()`` is a path-free reason.

    Private to the flavors package: each flavor turns it into an ``InvalidInputError``
    with its own advice.
    """


def dump_skops(obj: object, file: Path) -> list[str]:
    """Write ``obj`` to ``file`` with skops and check that it loads back.

    Returns:
        The types of ``obj`` outside skops' safe list, sorted: the ``trusted`` list
        needed to load the file.

    Raises:
        DumpError: skops cannot write it, or the file does not load back (skops writes
            lambdas and local classes that it cannot import again), or one of its
            classes lives in ``__main__`` (a script or notebook a server cannot import).
    """
    import skops.io

    try:
        skops.io.dump(obj, file)
        types = list(skops.io.get_untrusted_types(file=file))
    except Exception as exc:
        raise DumpError(reason(exc)) from exc
    in_main = [t for t in types if t.startswith("__main__.")]
    if in_main:
        raise DumpError(
            f"{', '.join(in_main)} is defined in __main__ (a script or notebook), which a "
            "server cannot import; move it into an importable module"
        )
    try:
        skops.io.load(file, trusted=types)
    except Exception as exc:
        raise DumpError(reason(exc)) from exc
    return types


def untrusted_types(file: Path, *, what: str) -> list[str]:
    """The types in the skops file outside skops' safe list, without building anything.

    Raises:
        ModelLoadError: not a skops file.
    """
    import skops.io

    try:
        return list(skops.io.get_untrusted_types(file=file))
    except Exception as exc:  # unpickling can raise anything
        raise load_failed(what, exc) from exc


def require_trusted_types(types: Sequence[str], *, trust_pickle: bool) -> None:
    """Refuse a skops file with types outside skops' safe list unless trusted.

    Raises:
        UntrustedTypesError: naming the types and the flag that trusts them.
    """
    if types and not trust_pickle:
        raise UntrustedTypesError(types)


def load_skops(file: Path, trusted: object, *, what: str) -> Any:
    """Load a skops file allowing exactly ``trusted`` beyond skops' safe list.

    Raises:
        ModelLoadError: the file does not load, or holds types not in ``trusted``.
    """
    import skops.io

    if not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted):
        raise load_failed(what, TypeError("its metadata has no valid list of trusted types"))
    try:
        return skops.io.load(file, trusted=trusted)
    except Exception as exc:
        raise load_failed(what, exc) from exc


def load_pickle(file: Path, kind: PickleKind, *, what: str) -> Any:
    """Unpickle ``file``. Runs code from the file: callers check trust first.

    ``joblib`` reads both joblib dumps and plain pickles; ``cloudpickle`` payloads are
    plain pickles that refer to the cloudpickle package, so it must be importable.

    Raises:
        MissingDependencyError: ``cloudpickle`` without the cloudpickle package.
        ModelLoadError: the file does not unpickle.
    """
    if kind == "cloudpickle":
        try:
            importlib.import_module("cloudpickle")
        except ImportError as exc:
            raise MissingDependencyError(
                "loading a model saved with cloudpickle (pip install cloudpickle)", "mlflow"
            ) from exc
    try:
        if kind == "joblib":
            import joblib

            return joblib.load(file)
        with file.open("rb") as stream:
            return pickle.load(stream)  # noqa: S301  # only behind the trust flag
    except Exception as exc:
        raise load_failed(what, exc) from exc

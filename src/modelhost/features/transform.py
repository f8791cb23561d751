"""A feature view's transformation: one Python function for training and serving.

A view may name ``transformation: package.module:function``. The function takes a
DataFrame of the view's features (one column per feature, by its name; a row per entity,
nulls where a value is missing) and returns a DataFrame with the same rows and at least
those columns, transformed. The training frame applies it to the joined rows, serving to
the looked-up rows of each request: the one definition of the feature is the source and
this function, so training and serving cannot drift apart.

The module is imported from the Python path of the process that reads the features (the
current folder of a command, the server's ``PYTHONPATH``), as models registered by import
path are; only a deployer can name one.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from modelhost.errors import InvalidInputError


@functools.cache
def load_transformation(target: str) -> Callable[[Any], Any]:
    """The function at ``package.module:function`` (imported once per process)."""
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except Exception as exc:  # noqa: BLE001 - an import runs the module's code
        raise InvalidInputError(f"the transformation {target!r} cannot be imported "
                                f"({type(exc).__name__}); is its module on the Python "
                                "path?") from None
    if not callable(obj):
        raise InvalidInputError(f"the transformation {target!r} is not a function")
    return obj  # type: ignore[no-any-return]


def transform(target: str, frame: Any, columns: Sequence[str], view: str) -> Any:
    """``frame[columns]`` through the transformation, checked: the same rows, and each
    of ``columns`` there. Raises InvalidInputError naming the view otherwise."""
    import pandas as pd

    try:
        function = load_transformation(target)
    except InvalidInputError as exc:
        raise InvalidInputError(f"feature view {view!r}: {exc.message}") from None
    given = frame[list(columns)].copy()
    try:
        result = function(given)
    except Exception as exc:  # noqa: BLE001 - user code, reported as the view's
        # Its type only: the message of someone else's code may hold a path or a value.
        raise InvalidInputError(f"feature view {view!r}: its transformation raised "
                                f"{type(exc).__name__}") from None
    if not isinstance(result, pd.DataFrame) or len(result) != len(given):
        raise InvalidInputError(f"feature view {view!r}: its transformation must return a "
                                "DataFrame with the rows it was given")
    missing = [c for c in columns if c not in result.columns]
    if missing:
        raise InvalidInputError(f"feature view {view!r}: its transformation dropped "
                                f"{', '.join(missing)}")
    return result[list(columns)].set_axis(given.index)

"""The scoring kernel: one loaded version's input conversion, model call and output checks.

The server (batched, asynchronous) and the one-shot paths (``modelhost predict``, jobs,
:meth:`LoadedVersion.predict <modelhost.registry.LoadedVersion.predict>`) score through
the same :class:`Scorer`, so that both refuse the same inputs with the same messages: a
version past its sunset, inputs that break the signature, outputs that are NaN or infinite.

numpy and pandas load on first use: the registry commands of the CLI import this module
and never score.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from modelhost.errors import (
    InvalidInputError,
    ModelhostError,
    PredictionFailedError,
    VersionSunsetError,
)

if TYPE_CHECKING:
    import numpy as np

    from modelhost.entities import ModelVersion
    from modelhost.flavors import LoadedModel
    from modelhost.signature import InputValidator

NONFINITE_MESSAGE = ("the model gives no finite result for these inputs "
                     "(values too large in magnitude?)")


def nonfinite_rows(*outputs: Any) -> np.ndarray | None:
    """A per-row bool mask of the rows where any float or complex ndarray among
    ``outputs`` holds NaN or an infinity; None when every such output is finite.

    Other outputs (lists, strings, integers, 0-d arrays) are never NaN and are skipped.
    Computed once per (combined) batch, so that each request only reads its own slice.
    """
    import numpy as np

    mask: np.ndarray | None = None
    for output in outputs:
        if isinstance(output, np.ndarray) and output.dtype.kind in "fc" and output.ndim:
            finite = np.isfinite(output)
            if not finite.all():
                bad = ~np.asarray(finite.reshape(len(output), -1).all(axis=1))
                mask = bad if mask is None else mask | bad
    return mask


def check_finite(nonfinite: np.ndarray | None) -> None:
    """Refuse outputs that JSON (and the documented answers) cannot carry.

    Raises:
        InvalidInputError: ``nonfinite`` (from :func:`nonfinite_rows`) marks any row;
            a model fed finite but extreme inputs can overflow to NaN or infinity, so
            it is the inputs that are refused, with :data:`NONFINITE_MESSAGE`.
    """
    if nonfinite is not None and nonfinite.any():
        raise InvalidInputError(NONFINITE_MESSAGE)


def check_sunset(version: ModelVersion, today: dt.date) -> None:
    """Refuse a version retired before ``today``; on its sunset day it still answers.

    Raises:
        VersionSunsetError: ``today`` is after the version's sunset date.
    """
    if version.sunset is not None and today > version.sunset:
        raise VersionSunsetError(version.model, version.version, version.sunset.isoformat())


class Scorer:
    """One loaded version's scoring: input conversion, model call, output checks.

    ``validator`` defaults to one built from the version's signature (None for a version
    without input signature). ``as_array=True`` makes a numeric signature's validator
    return a 2-D array instead of a DataFrame (for models that take one as is).
    """

    def __init__(self, version: ModelVersion, model: LoadedModel, *,
                 validator: InputValidator | None = None, as_array: bool = False) -> None:
        if validator is None and version.signature is not None and version.signature.inputs:
            from modelhost.signature import InputValidator  # pandas: only when scoring

            validator = InputValidator(version.signature)
        self.version = version
        self.model = model
        self.validator = validator
        self.as_array = as_array

    def warm_up(self) -> None:
        """Run the model once on the version's input example, if it has one: flavors
        choose and verify their faster paths then (plain arrays, the class from the
        probabilities, the model's arithmetic), and a numeric signature validates
        straight into an array when the model takes one."""
        mv = self.version
        if mv.input_example is None or self.validator is None:
            return
        self.model.warm_up(self.validator.validate(mv.input_example))
        self.as_array = self.validator.numeric_block and self.model.accepts_array(
            [c.name for c in mv.signature.columns] if mv.signature else [])

    @property
    def runs_arithmetic(self) -> bool:
        """Whether a request's prepared input is scored by verified array arithmetic
        alone (no user code, nothing that waits): bounded by its rows, and cheaper to
        run where it is than to hand over to another thread."""
        return self.as_array and self.model.array_kernel

    def prepare(self, payload: Any, *, numeric_rows_only: bool = False) -> Any:
        """The model input for ``payload``.

        With a signature, the validator checks and converts it. Without one, it reaches
        the model as given: a DataFrame as it is, records or a dict of columns as a
        DataFrame of exactly those columns, a list of rows as an array. With
        ``numeric_rows_only`` (the server, which combines the inputs of several requests
        into one model call) an unsigned payload must be a list of rows of numbers and
        becomes a 2-D float64 array.

        Raises:
            SignatureViolationError: the payload breaks the signature.
            InvalidInputError: a payload that is no table or array at all, or, with
                ``numeric_rows_only``, not a list of rows of numbers.
        """
        if self.validator is not None:
            return self.validator.validate(payload, as_array=self.as_array)
        if numeric_rows_only:
            return _numeric_rows(payload)
        if _is_dataframe(payload):
            return payload
        from modelhost.signature import example_from_jsonable  # pandas: only when scoring

        return example_from_jsonable(payload, None, what="input")

    def run(self, inputs: Any) -> tuple[Any, Any, np.ndarray | None]:
        """One model call on prepared ``inputs``: predictions (an ndarray),
        probabilities (or None), and the :func:`nonfinite_rows` mask of both.

        Raises whatever the model raises; the caller decides how to report it.
        """
        import numpy as np

        predictions, probabilities = self.model.predict_with_proba(inputs)
        predictions = np.asarray(predictions)
        return predictions, probabilities, nonfinite_rows(predictions, probabilities)

    def score(self, payload: Any, *, today: dt.date) -> tuple[Any, Any]:
        """Score ``payload`` at once (the synchronous path of the CLI and jobs):
        predictions and probabilities (or None).

        Raises:
            VersionSunsetError: the version is past its sunset on ``today``.
            SignatureViolationError: the payload breaks the signature.
            InvalidInputError: a payload that is no table or array at all, or inputs
                for which the model gives NaN or infinite outputs.
            PredictionFailedError: the model raised.
        """
        check_sunset(self.version, today)
        inputs = self.prepare(payload)
        try:
            predictions, probabilities, nonfinite = self.run(inputs)
        except ModelhostError:
            raise
        except Exception as exc:  # a user model may raise anything; report, don't crash
            raise PredictionFailedError(
                _model_failure(exc, signed=self.validator is not None)) from exc
        check_finite(nonfinite)
        return predictions, probabilities


def _numeric_rows(payload: Any) -> Any:
    """Input for a version registered without a signature: a 2-D array of numbers."""
    import numpy as np

    try:
        array = np.asarray(payload, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(
            "this version has no signature, so 'inputs' must be a list of rows of numbers"
        ) from None
    if array.ndim != 2:
        raise InvalidInputError("'inputs' must be a list of rows of numbers")
    return array


def _is_dataframe(value: Any) -> bool:
    # Checked by name so that pandas is not imported for inputs that cannot be frames.
    return type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas")


# Absolute paths (POSIX or Windows) in a model's own error message: never shown.
_PATHS = re.compile(r"(?<![\w.])/[^\s'\"]+|\b[A-Za-z]:\\[^\s'\"]*")


def first_line(exc: Exception) -> str:
    """``TypeName: first line of the message``, path-free, at most 300 characters."""
    first = _PATHS.sub("<path>", (str(exc).strip().splitlines() or [""])[0])[:300]
    return type(exc).__name__ + (f": {first}" if first else "")


def _model_failure(exc: Exception, *, signed: bool) -> str:
    reason = f"it raised {first_line(exc)}"
    if not signed:
        reason += ("; this version has no signature, so its input reaches the model as "
                   "given: send the columns it was trained on, or register it with "
                   "--input-example to have inputs checked")
    return reason

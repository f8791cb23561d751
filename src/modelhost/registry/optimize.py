"""``optimize``: convert a scikit-learn model to ONNX, check it agrees, serve the faster.

The ONNX graph computes in float32, so its probabilities differ from scikit-learn's in
the last digits. It is accepted only if, on the input example and the reference data,
every predicted class (or regression value, within the tolerance) is the same and no
probability differs by more than ``tolerance``. Then both are timed on one row and on a
batch of 64 rows, and the faster one is served. The original file stays in the artifact.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelhost.errors import ModelhostError
from modelhost.flavors import LoadedModel, SavedModel, get_flavor

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OptimizeReport:
    chosen: str  # "onnx" or the original flavor
    reason: str
    tolerance: float
    max_abs_diff: float | None = None
    rows_checked: int = 0
    original_ms_1: float | None = None
    onnx_ms_1: float | None = None
    original_ms_64: float | None = None
    onnx_ms_64: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def try_onnx(model: object, original: LoadedModel, check_data: Any, dest: Path, *,
             tolerance: float = DEFAULT_TOLERANCE
             ) -> tuple[SavedModel | None, LoadedModel | None, OptimizeReport]:
    """Convert ``model``, write ``model.onnx`` into ``dest`` and decide which to serve.

    ``check_data`` is a DataFrame of rows in signature order (the input example, plus
    reference data when given). Returns the ONNX SavedModel and LoadedModel when ONNX
    wins, else (None, None); the report says why either way. Never raises for a model
    that cannot be converted: optimisation is best effort.
    """
    import numpy as np

    from modelhost.flavors.onnx import convert_sklearn

    onnx_flavor = get_flavor("onnx")
    try:
        proto = convert_sklearn(model, check_data)
        saved = onnx_flavor.save(proto, dest)
        candidate = onnx_flavor.load(dest, saved.meta)
        expected, expected_proba = original.predict_with_proba(check_data)
        got, got_proba = candidate.predict_with_proba(check_data)
    except ModelhostError as exc:
        _remove(dest / "model.onnx")
        return None, None, OptimizeReport("original", f"not converted: {exc.message}",
                                          tolerance)
    rows = len(check_data)
    if np.issubdtype(np.asarray(expected).dtype, np.floating):
        diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - expected)))
        labels_equal = diff <= tolerance * max(1.0, float(np.max(np.abs(expected))))
    else:
        labels_equal = bool(np.array_equal(np.asarray(got).astype(expected.dtype), expected))
        diff = 0.0
    if expected_proba is not None and got_proba is not None:
        diff = max(diff, float(np.max(np.abs(got_proba - expected_proba))))
    if not labels_equal or diff > tolerance:
        _remove(dest / "model.onnx")
        return None, None, OptimizeReport(
            "original", "ONNX predictions differ beyond the tolerance", tolerance, diff, rows)
    batch = check_data.iloc[np.arange(64) % rows].reset_index(drop=True)
    one = check_data.iloc[:1]
    timings = {
        "original_ms_1": _median_ms(original, one), "onnx_ms_1": _median_ms(candidate, one),
        "original_ms_64": _median_ms(original, batch), "onnx_ms_64": _median_ms(candidate, batch),
    }
    faster = (timings["onnx_ms_1"] + timings["onnx_ms_64"]
              < timings["original_ms_1"] + timings["original_ms_64"])
    if not faster:
        _remove(dest / "model.onnx")
        return None, None, OptimizeReport("original", "ONNX is not faster", tolerance, diff,
                                          rows, **timings)
    return saved, candidate, OptimizeReport("onnx", "ONNX agrees and is faster", tolerance,
                                            diff, rows, **timings)


def _median_ms(model: LoadedModel, data: Any, *, repeats: int = 25) -> float:
    model.predict_with_proba(data)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_with_proba(data)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return round(samples[len(samples) // 2], 4)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)

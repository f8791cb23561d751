"""A job's JSON-lines result as the frames ``modelhost batch`` writes: the scored input
rows with ``prediction``, ``probability_<class>`` and ``model_version``, and the refused
rows (as text) with their ``reason``. What ``modelhost batch --server`` makes of a job
run on a server, so that its output has the columns of a batch run on Dask."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson


def json_lines(chunks: Iterable[bytes]) -> list[dict[str, Any]]:
    """The objects of a JSON-lines stream arriving in chunks of any size."""
    data = b"".join(chunks)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def scored_frame(inputs: Any, results: Sequence[dict[str, Any]], version: str,
                 classes: Sequence[Any] | None = None) -> Any:
    """``inputs``' rows that were scored (in the result's order), with their
    prediction, one ``probability_<class>`` column per class (``classes``, or the
    position when they are not known) and ``model_version``."""
    import numpy as np

    rows = [int(r["row"]) for r in results]
    frame = inputs.iloc[rows].reset_index(drop=True)
    frame["prediction"] = np.asarray([r["prediction"] for r in results])
    if results and "probabilities" in results[0]:
        proba = np.asarray([r["probabilities"] for r in results], dtype=float)
        n = proba.shape[1]
        labels = classes if classes is not None and len(classes) == n else range(n)
        for i, label in enumerate(labels):
            frame[f"probability_{label}"] = proba[:, i]
    frame["model_version"] = version
    return frame


def refused_frame(inputs: Any, rejects: Sequence[dict[str, Any]]) -> Any:
    """The refused rows of ``inputs`` as text (missing values as nulls), with the
    ``reason``: the columns of a Dask batch's rejects."""
    import pandas as pd

    rows = [int(r["row"]) for r in rejects]
    bad = inputs.iloc[rows].reset_index(drop=True)
    bad = bad.astype(object).where(bad.notna(), None).astype("string")
    bad["reason"] = pd.array([str(r["reason"]) for r in rejects], dtype="string")
    return bad

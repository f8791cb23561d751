"""Models that misbehave, registered by import path (python flavor) in serving tests."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


class RaisingModel:
    def predict(self, X: Any) -> Any:
        raise ValueError("secret token sk-123 at /etc/modelhost/private.key")


class WrongRowsModel:
    def predict(self, X: Any) -> Any:
        return np.zeros(max(len(X) - 1, 0))


class SlowModel:
    """Takes a second per call: hangs are what deadlines are for."""

    def predict(self, X: Any) -> Any:
        time.sleep(1.0)
        return np.zeros(len(X))


class FlakyModel:
    """Answers class 0, but raises on any batch with a petal longer than 5 cm (about a
    quarter of iris's rows): a candidate a canary must roll back."""

    def predict(self, X: Any) -> Any:
        petals = np.asarray(X)[:, 2] if not hasattr(X, "columns") else X["petal_length"]
        if (np.asarray(petals, dtype=float) > 5.0).any():
            raise ValueError("this candidate cannot handle long petals")
        return np.zeros(len(X), dtype=int)

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

"""Python-flavor models for the stop-signal tests, registered by import path.

The server imports this module, so it imports nothing heavy at module level. Their
delays come from the server's environment (the test process leaves them unset), and
each records the moment it starts working as a file in ``STOP_TEST_MARKS``, so a test
can send its signal while a model is loading or predicting.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any


def _mark(kind: str) -> None:
    folder = os.environ.get("STOP_TEST_MARKS")
    if folder:
        Path(folder, f"{kind}-{os.getpid()}-{uuid.uuid4().hex}").touch()


def marks(folder: Path, kind: str) -> int:
    """How many ``kind`` ("load" or "predict") calls have started."""
    return len(list(folder.glob(f"{kind}-*")))


class Zeros:
    """Answers zeros at once, after ``STOP_TEST_LOAD_S`` seconds to load (none by default)."""

    def __init__(self) -> None:
        _mark("load")
        time.sleep(float(os.environ.get("STOP_TEST_LOAD_S", "0")))

    def predict(self, X: Any) -> Any:
        import numpy as np

        return np.zeros(len(X), dtype=np.int64)


class SlowPredict:
    """Answers zeros after ``STOP_TEST_PREDICT_S`` seconds (1.5 by default)."""

    def predict(self, X: Any) -> Any:
        import numpy as np

        _mark("predict")
        time.sleep(float(os.environ.get("STOP_TEST_PREDICT_S", "1.5")))
        return np.zeros(len(X), dtype=np.int64)

"""The BentoML service of the benchmark (BentoML 1.4 ``@bentoml.service`` API).

``bentoml serve bento_service:Classifier`` with, in the environment:

* ``BENCH_BENTO_MODEL``: the model tag in the store (``bench-lr:latest``);
* ``BENCH_BENTO_BATCHABLE``: ``1`` for adaptive batching (``@bentoml.api(batchable=True)``),
  ``0`` for one model call per request;
* ``BENCH_BENTO_WORKERS``: worker processes (``@bentoml.service(workers=N)``);
* ``BENCH_BENTO_MAX_BATCH``: ``max_batch_size`` when batching (64, modelhost's default).

Request body: ``{"data": [[f0, ..., f19]]}`` (a 1x20 array); response: ``[class]``.
The API is synchronous, so BentoML runs it in its thread pool, as its scikit-learn
examples do.
"""

from __future__ import annotations

import os
import warnings

import bentoml
import numpy as np

# The models were fitted on a DataFrame (columns f0..f19); this API passes the ndarray
# straight to predict, so silence scikit-learn's per-call "no feature names" warning.
warnings.filterwarnings("ignore", message="X does not have valid feature names")

MODEL_TAG = os.environ.get("BENCH_BENTO_MODEL", "bench-lr:latest")
BATCHABLE = os.environ.get("BENCH_BENTO_BATCHABLE", "0") == "1"
WORKERS = int(os.environ.get("BENCH_BENTO_WORKERS", "1"))
MAX_BATCH = int(os.environ.get("BENCH_BENTO_MAX_BATCH", "64"))


@bentoml.service(workers=WORKERS)
class Classifier:
    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = bentoml.sklearn.load_model(MODEL_TAG)

    @bentoml.api(batchable=BATCHABLE, max_batch_size=MAX_BATCH)
    def predict(self, data: np.ndarray) -> np.ndarray:
        return self.model.predict(data)

"""Models for the start-up tests: one production version of each flavor, and python
models that load slowly or fail to load until told otherwise.

This module is also imported *by the server* (the python models are registered by import
path), so it imports nothing heavy at module level.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

# The server reads these from its environment when it builds the python models.
LOAD_DELAY_ENV = "STARTUP_TEST_LOAD_DELAY_S"  # seconds SlowLoadingModel takes to build
BROKEN_MARKER_ENV = "STARTUP_TEST_BROKEN_MARKER"  # while this file exists, BrokenModel fails

# name -> flavor of the five production versions of `build_home`.
FIVE = {"iris-skops": "sklearn", "forest-trusted": "sklearn", "iris-onnx": "onnx",
        "iris-mlflow": "mlflow", "iris-python": "python"}


class ConstantModel:
    """A python-flavor model: predicts class 0 for every row."""

    def predict(self, X: Any) -> Any:
        import numpy as np

        return np.zeros(len(X), dtype=np.int64)


class SlowLoadingModel(ConstantModel):
    """Takes ``$STARTUP_TEST_LOAD_DELAY_S`` seconds to build (0 when unset)."""

    def __init__(self) -> None:
        time.sleep(float(os.environ.get(LOAD_DELAY_ENV, "0")))


class BrokenModel(ConstantModel):
    """Fails to build while the file named by ``$STARTUP_TEST_BROKEN_MARKER`` exists."""

    def __init__(self) -> None:
        marker = os.environ.get(BROKEN_MARKER_ENV)
        if marker and Path(marker).exists():
            raise RuntimeError("the feature store is unreachable")


def build_home(home: Path, work: Path) -> None:
    """Register and promote one production version of each of five flavors in ``home``
    (its files are written to ``work`` first): skops, skops with a trusted type
    (imported from a file with trust), ONNX, an MLflow folder and a python import path.
    """
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier
    from tests.fixtures_models import iris, iris_example, iris_model

    from modelhost import Client, Settings
    from modelhost.flavors.onnx import convert_sklearn

    X, y = iris()
    logistic = iris_model()
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    forest_file = work / "forest.skops"
    skops.io.dump(forest, forest_file)  # holds sklearn.tree._tree.Tree: needs trust
    mlflow_dir = work / "mlflow-iris"
    mlflow.sklearn.save_model(logistic, mlflow_dir, serialization_format="skops",
                              signature=infer_signature(X, logistic.predict(X)),
                              input_example=X.head(3),
                              pip_requirements=["scikit-learn", "skops"])
    example = iris_example()
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                        artifacts=str(home / "artifacts"))
    with Client(settings) as client:
        registry = client.registry
        registry.register(logistic, name="iris-skops", input_example=example)
        registry.register(name="forest-trusted", path=forest_file, trust_pickle=True,
                          input_example=example)
        registry.register(convert_sklearn(logistic, X), name="iris-onnx",
                          input_example=example)
        registry.register(name="iris-mlflow", path=mlflow_dir)
        registry.register("tests.serving.startup_models:ConstantModel", name="iris-python",
                          flavor="python", input_example=example)
        for name in FIVE:
            registry.transition(name, "1.0.0", "staging")
            registry.transition(name, "1.0.0", "production")

"""A :class:`LoadedModel` around a live Python object with ``predict``.

Used by the sklearn and python flavors and by MLflow's sklearn flavor. scikit-learn
estimators get their input adapted so that a DataFrame and a plain 2-D array both work
without scikit-learn's feature-name warnings; any other object receives the input as is.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelhost.flavors.base import LoadedModel

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def is_sklearn_estimator(obj: object) -> bool:
    """Whether ``obj`` is a scikit-learn ``BaseEstimator`` (without importing sklearn)."""
    # An object can only be an instance of BaseEstimator if sklearn is already imported.
    base = sys.modules.get("sklearn.base")
    return base is not None and isinstance(obj, base.BaseEstimator)


def has_predict(obj: object) -> bool:
    return callable(getattr(obj, "predict", None))


def is_sklearn_like(obj: object) -> bool:
    """A scikit-learn estimator or pipeline, or an object that quacks like one."""
    if not has_predict(obj):
        return False
    if is_sklearn_estimator(obj):
        return True
    return callable(getattr(obj, "fit", None)) and callable(getattr(obj, "get_params", None))


class ObjectModel(LoadedModel):
    """Predicts with ``model.predict`` and, when it has one, ``model.predict_proba``."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._estimator = is_sklearn_like(model)
        self._classes = _classes(model)
        # Multi-output classifiers return a list of arrays from predict_proba; the
        # contract is one (n_rows, n_classes) matrix, so they report no probabilities.
        multi_output = isinstance(getattr(model, "classes_", None), list)
        self._has_proba = callable(getattr(model, "predict_proba", None)) and not multi_output

    @property
    def model(self) -> Any:
        """The wrapped object."""
        return self._model

    def predict(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> np.ndarray:
        import numpy as np

        return np.asarray(self._model.predict(self._adapt(X)))

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> np.ndarray | None:
        if not self._has_proba:
            return None
        import numpy as np

        return np.asarray(self._model.predict_proba(self._adapt(X)), dtype=np.float64)

    @property
    def has_proba(self) -> bool:
        return self._has_proba

    @property
    def classes(self) -> list[Any] | None:
        return self._classes

    def _adapt(self, data: Any) -> Any:
        if not self._estimator:
            return data
        return adapt_for_estimator(self._model, data)


def adapt_for_estimator(model: Any, data: Any) -> Any:
    """Shape ``data`` the way ``model`` was fitted: named columns or a plain array.

    scikit-learn warns (and, under strict warning filters, fails) when an estimator
    fitted on a DataFrame gets an array or the reverse, and refuses reordered columns.
    """
    import numpy as np
    import pandas as pd

    if isinstance(data, Mapping):
        data = pd.DataFrame({str(k): _column(v) for k, v in data.items()})
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        columns = [str(n) for n in names]
        if isinstance(data, pd.DataFrame):
            if list(data.columns) != columns and set(columns) <= set(data.columns):
                return data[columns]
            return data
        array = np.asarray(data)
        if array.ndim == 2 and array.shape[1] == len(columns):
            return pd.DataFrame(array, columns=columns)
        return array
    if isinstance(data, pd.DataFrame):
        return data.to_numpy()
    return data


def _column(values: Any) -> Any:
    import numpy as np

    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    return array


def _classes(model: Any) -> list[Any] | None:
    import numpy as np

    classes = getattr(model, "classes_", None)
    if classes is None or isinstance(classes, list):
        return None
    array = np.asarray(classes)
    if array.ndim != 1:
        return None
    labels: list[Any] = array.tolist()
    return labels

"""A :class:`LoadedModel` around a live Python object with ``predict``.

Used by the sklearn and python flavors and by MLflow's sklearn flavor. scikit-learn
estimators get their input adapted so that a DataFrame and a plain 2-D array both work
without scikit-learn's feature-name warnings; any other object receives the input as is.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from modelhost.flavors.base import LoadedModel

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelhost.flavors._kernels import Kernel


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


# Classifiers whose ``predict`` is, by construction, the class of highest probability:
# for them one ``predict_proba`` call gives both outputs.
_ARGMAX_CLASSIFIERS = frozenset({
    "LogisticRegression", "LogisticRegressionCV", "RandomForestClassifier",
    "ExtraTreesClassifier", "DecisionTreeClassifier", "ExtraTreeClassifier",
    "GradientBoostingClassifier", "HistGradientBoostingClassifier", "GaussianNB",
    "KNeighborsClassifier", "MLPClassifier",
})


class ObjectModel(LoadedModel):
    """Predicts with ``model.predict`` and, when it has one, ``model.predict_proba``.

    For scikit-learn models, :meth:`warm_up` looks for two verified shortcuts used by
    :meth:`predict_with_proba`: giving the estimator a plain array in its training
    column order (a DataFrame costs scikit-learn ~0.5 ms per call in checks) through a
    copy without recorded feature names, and deriving the predicted class from the
    probabilities. Each is kept only if it reproduces the normal results exactly on the
    example. With the first, a few linear models also get an array kernel (see
    :mod:`modelhost.flavors._kernels`), kept under the same condition.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._fast: Any = None  # a copy that takes plain arrays, once verified
        self._columns: list[str] | None = None  # the array's column order
        self._argmax = False
        self._kernel: Kernel | None = None  # verified arithmetic of the model, for arrays
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

    def predict_with_proba(
        self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        import numpy as np

        model, data = self._model, cast(Any, X)
        if self._fast is not None and self._columns is not None and _is_frame(X):
            model, data = self._fast, _as_array(X, self._columns)
        elif self._fast is not None and _is_matrix(X):  # already in self._columns order
            model = self._fast
        else:
            data = self._adapt(X)
        if model is self._fast and self._kernel is not None and data.dtype == np.float64:
            return self._kernel(data)
        if self._argmax:
            proba = np.asarray(model.predict_proba(data), dtype=np.float64)
            return np.asarray(self._model.classes_).take(proba.argmax(axis=1)), proba
        predictions = np.asarray(model.predict(data))
        if not self._has_proba:
            return predictions, None
        return predictions, np.asarray(model.predict_proba(data), dtype=np.float64)

    @property
    def shortcuts(self) -> frozenset[str]:
        """The verified shortcuts in use: ``array`` (plain arrays in training column
        order), ``argmax`` (the class from the probabilities), ``kernel`` (the model's
        arithmetic without scikit-learn's checks)."""
        found = {"array": self._fast is not None, "argmax": self._argmax,
                 "kernel": self._kernel is not None}
        return frozenset(name for name, used in found.items() if used)

    @property
    def array_kernel(self) -> bool:
        return self._kernel is not None

    def accepts_array(self, columns: list[str]) -> bool:
        return self._fast is not None and self._columns == list(columns)

    def warm_up(self, X: pd.DataFrame | np.ndarray | dict[str, np.ndarray]) -> None:
        import numpy as np

        expected, expected_proba = super().predict_with_proba(X)
        if not self._estimator or not _is_frame(X):
            return
        fast, columns = _array_variant(self._model, X)
        if fast is not None and columns is not None:
            try:
                data = _as_array(X, columns)
                same = np.array_equal(np.asarray(fast.predict(data)), expected) and (
                    expected_proba is None or np.array_equal(
                        np.asarray(fast.predict_proba(data), dtype=np.float64),
                        expected_proba))
            except Exception:  # noqa: BLE001  # any failure just means: no shortcut
                same = False
            if same:
                self._fast, self._columns = fast, columns
                self._kernel = _verified_kernel(self._model, fast, data, self._has_proba)
        final = _final_step(self._model)
        if (expected_proba is not None and self._classes is not None
                and type(final).__name__ in _ARGMAX_CLASSIFIERS
                and type(final).__module__.startswith("sklearn.")):
            derived = np.asarray(self._model.classes_).take(expected_proba.argmax(axis=1))
            self._argmax = bool(np.array_equal(derived, expected))

    @property
    def classes(self) -> list[Any] | None:
        return self._classes

    def _adapt(self, data: Any) -> Any:
        if not self._estimator:
            return data
        return adapt_for_estimator(self._model, data)


def _verified_kernel(model: Any, fast: Any, data: Any, has_proba: bool) -> Kernel | None:
    """The model's array kernel if it gives what ``fast`` (the model's array variant)
    gives on ``data``, as one batch and row by row: the same classes, and numbers equal
    up to floating-point rounding (:data:`~modelhost.flavors._kernels.RTOL`)."""
    import numpy as np

    from modelhost.flavors._kernels import agrees, compile_kernel

    kernel = compile_kernel(model)
    data = np.asarray(data)
    if kernel is None or data.dtype != np.float64 or data.ndim != 2:
        return None
    try:
        for rows in [data, *(data[i:i + 1] for i in range(min(len(data), 16)))]:
            rows = np.ascontiguousarray(rows)
            got, got_proba = kernel(rows)
            want_proba = (np.asarray(fast.predict_proba(rows), dtype=np.float64)
                          if has_proba else None)
            if not agrees(got, np.asarray(fast.predict(rows))):
                return None
            if want_proba is None or got_proba is None:
                if want_proba is not got_proba:
                    return None
            elif not agrees(got_proba, want_proba):
                return None
    except Exception:  # noqa: BLE001  # any failure just means: no kernel
        return None
    return kernel


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


def _is_matrix(X: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(X, numpy.ndarray) and X.ndim == 2


def _is_frame(X: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(X, pandas.DataFrame)


def _as_array(frame: Any, columns: list[str]) -> Any:
    if list(frame.columns) != columns:
        frame = frame[columns]
    return frame.to_numpy()


def _final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if isinstance(steps, list) and steps else model


def _array_variant(model: Any, frame: Any) -> tuple[Any, list[str] | None]:
    """A copy of a scikit-learn model that takes a plain numeric array, and the column
    order of that array; (None, None) when the model needs its DataFrame."""
    import copy

    import numpy as np

    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None, None
    columns = [str(n) for n in names]
    if not set(columns) <= set(frame.columns) or not all(
            np.issubdtype(dtype, np.number) for dtype in frame[columns].dtypes):
        return None, None
    first = model.steps[0][1] if isinstance(getattr(model, "steps", None), list) else model
    if type(first).__name__ == "ColumnTransformer":  # selects columns by name
        return None, None
    fast = copy.deepcopy(model)
    target = fast.steps[0][1] if first is not model else fast
    try:
        del target.feature_names_in_
    except AttributeError:
        return None, None
    return fast, columns

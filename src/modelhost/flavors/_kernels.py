"""Array kernels: the arithmetic of a few common scikit-learn models without the checks.

For a one-row request, a fitted ``LogisticRegression`` spends about 90 µs in
scikit-learn's input validation and 5 µs on the arithmetic. Serving validates every
request against the signature already, so for the models below :func:`compile_kernel`
builds a function of a float64 array that repeats exactly the operations scikit-learn's
``predict``/``predict_proba`` perform on the fitted attributes (same order, same
numpy/scipy functions).

A kernel is never trusted on its own: :class:`~modelhost.flavors._predictor.ObjectModel`
uses one only after it reproduced the model's own outputs on the version's input example
(see :func:`agrees`), and only for float64 arrays in the training column order. Anything
else (another estimator, a subclass, an unusual attribute) gets ``None`` and the normal
path.

Supported: ``LogisticRegression`` (binary and multinomial), ``LinearRegression``,
``Ridge``, ``Lasso`` and ``ElasticNet``, each alone or after ``StandardScaler`` steps in
a ``Pipeline``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
Kernel = Callable[[Array], tuple[Array, Array | None]]
"""``kernel(X) -> (predictions, probabilities or None)`` for a float64 2-D array."""

RTOL = 1e-9
ATOL = 1e-12
"""How far a kernel's numbers may be from scikit-learn's. Both do the same operations,
but the BLAS matrix product rounds differently with memory layout and alignment (the
same estimator already differs from itself by ~1e-15 between a C- and a
Fortran-ordered copy of its input)."""

_REGRESSORS = frozenset({"LinearRegression", "Ridge", "Lasso", "ElasticNet"})


def compile_kernel(model: Any) -> Kernel | None:
    """The array kernel of ``model``, or None when it is not one of the supported shapes."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and type(model).__name__ == "Pipeline":
        estimators = [step for _, step in steps]
    else:
        estimators = [model]
    if not estimators or not all(_is_sklearn(e) for e in estimators):
        return None
    scalers = [_scaler(e) for e in estimators[:-1]]
    if any(s is None for s in scalers):
        return None
    final = estimators[-1]
    name = type(final).__name__
    if name == "LogisticRegression":
        head = _logistic(final)
    elif name in _REGRESSORS:
        head = _linear_regressor(final)
    else:
        return None
    if head is None:
        return None
    transforms = [s for s in scalers if s is not None]

    def kernel(X: Array) -> tuple[Array, Array | None]:
        for transform in transforms:
            X = transform(X)
        return head(X)

    return kernel


def agrees(got: Array, want: Array) -> bool:
    """Same shape; class labels equal; numbers equal up to :data:`RTOL`/:data:`ATOL`."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    if got.dtype.kind == "f" and want.dtype.kind == "f":
        return bool(np.allclose(got, want, rtol=RTOL, atol=ATOL))
    return bool(np.array_equal(got, want))


def _is_sklearn(obj: object) -> bool:
    # Exact classes only: a subclass may override the arithmetic.
    return type(obj).__module__.startswith("sklearn.") and hasattr(obj, "get_params")


def _float_vector(value: Any, size: int | None = None) -> Array | None:
    if not isinstance(value, np.ndarray) or value.dtype != np.float64 or value.ndim != 1:
        return None
    return value if size is None or value.shape[0] == size else None


def _scaler(step: Any) -> Callable[[Array], Array] | None:
    """StandardScaler.transform on a dense float64 array (it works on a copy)."""
    if type(step).__name__ != "StandardScaler":
        return None
    mean = _float_vector(step.mean_) if step.with_mean else None
    scale = _float_vector(step.scale_) if step.with_std else None
    if (step.with_mean and mean is None) or (step.with_std and scale is None):
        return None

    def transform(X: Array) -> Array:
        X = X.copy()
        if mean is not None:
            X -= mean
        if scale is not None:
            X /= scale
        return X

    return transform


def _logistic(est: Any) -> Callable[[Array], tuple[Array, Array | None]] | None:
    from scipy.special import expit
    from sklearn.utils.extmath import softmax

    coef, intercept, classes = est.coef_, est.intercept_, np.asarray(est.classes_)
    if not (isinstance(coef, np.ndarray) and coef.ndim == 2 and coef.dtype == np.float64
            and _float_vector(intercept, coef.shape[0]) is not None and classes.ndim == 1):
        return None
    binary = classes.shape[0] <= 2
    if coef.shape[0] != (1 if binary else classes.shape[0]):
        return None
    coef_t = coef.T

    def head(X: Array) -> tuple[Array, Array | None]:
        scores = X @ coef_t + intercept
        if binary:
            decision = scores.reshape(-1)
            positive = expit(decision)
            return classes.take((decision > 0).astype(np.intp)), np.stack(
                [1 - positive, positive], axis=1)
        predictions = classes.take(scores.argmax(axis=1))
        return predictions, softmax(scores, copy=False)

    return head


def _linear_regressor(est: Any) -> Callable[[Array], tuple[Array, Array | None]] | None:
    coef, intercept = est.coef_, est.intercept_
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim not in (1, 2):
        return None
    weights = coef if coef.ndim == 1 else coef.T

    def head(X: Array) -> tuple[Array, Array | None]:
        return X @ weights + intercept, None

    return head

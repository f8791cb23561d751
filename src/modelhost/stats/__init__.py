"""Pure numbers about models: quality metrics from labelled predictions.

No I/O, no SQL, no HTTP: callers pass plain sequences in and get plain floats back
(``performance``: classification and regression metrics that agree with scikit-learn's).
"""

from __future__ import annotations

from modelhost.stats.performance import (
    classification_metrics,
    is_classification,
    regression_metrics,
)

__all__ = ["classification_metrics", "is_classification", "regression_metrics"]

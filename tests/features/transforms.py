"""Transformations named by the feature definitions of the tests (imported by path)."""

from __future__ import annotations

from typing import Any

import numpy as np


def log_spend(frame: Any) -> Any:
    """Spend on a log scale, and orders capped: what a churn model would rather see."""
    return frame.assign(spend=np.log1p(frame["spend"]), orders=frame["orders"].clip(upper=40))


def drops_rows(frame: Any) -> Any:
    return frame.head(1)


def drops_a_column(frame: Any) -> Any:
    return frame.drop(columns=["spend"])


def raises(frame: Any) -> Any:
    raise ValueError("/secret/path/in/a/message")


NOT_A_FUNCTION = 3

"""Schema inference: :func:`infer_schema`, a :class:`DataSchema` that a DataFrame satisfies,
as a starting point to edit."""

from __future__ import annotations

from typing import Any

from modelhost.errors import InvalidInputError
from modelhost.tracking.datasets import _schema
from modelhost.tracking.validation.frames import _decategorize, _refuse_duplicate_columns
from modelhost.tracking.validation.schema import _NUMERIC, ColumnRule, DataSchema, _is_int

# Signature column types (the stored schema of a dataset) -> rule types.
_RULE_TYPE = {"double": "double", "float": "double", "long": "long", "integer": "long",
              "boolean": "boolean", "string": "string", "datetime": "datetime"}


def infer_schema(frame: Any, *, categorical_max: int = 20) -> DataSchema:
    """A schema that ``frame`` satisfies, as a starting point to edit.

    Types come from the data (as in signatures; float/integer widen to double/long, and a
    column of no single type becomes string); a column is nullable when it holds a missing
    value; numeric columns get their observed min and max; a string column with at most
    ``categorical_max`` distinct values gets them as its allowed values. A column is unique
    when it has no duplicate and looks like an identifier: a long or string column named
    ``id`` or ``*_id``, or a string column whose values are all distinct. Rows: at least 1.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError("infer_schema needs a pandas DataFrame")
    if not _is_int(categorical_max) or categorical_max < 0:
        raise InvalidInputError(f"categorical_max must be a whole number >= 0, "
                                f"got {categorical_max!r}")
    _refuse_duplicate_columns(frame)
    types = _schema(frame)
    columns: dict[str, ColumnRule] = {}
    for position, name in enumerate(types):
        kind = _RULE_TYPE.get(types[name], "string")
        columns[name] = _infer_rule(frame.iloc[:, position], name, kind, categorical_max)
    return DataSchema(columns=columns, min_rows=1)


def _infer_rule(series: Any, name: str, kind: str, categorical_max: int) -> ColumnRule:
    series = _decategorize(series)
    values = series.dropna()
    rule = ColumnRule(type=kind, nullable=bool(series.isna().any()))
    if values.empty:
        return rule
    distinct = int(values.nunique())
    all_distinct = distinct == len(values)
    lowered = name.lower()
    id_like = lowered == "id" or lowered.endswith(("_id", "-id"))
    rule.unique = all_distinct and (
        (kind in ("long", "string") and id_like) or (kind == "string" and len(values) > 1))
    if kind in _NUMERIC and not rule.unique:
        low, high = values.min(), values.max()
        rule.min, rule.max = ((int(low), int(high)) if kind == "long"
                              else (float(low), float(high)))
    elif kind == "string" and not rule.unique and distinct <= categorical_max:
        rule.allowed = sorted(str(v) for v in values.astype(str).unique())
    return rule


__all__ = ["infer_schema"]

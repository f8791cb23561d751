"""Data contracts: a YAML schema of a table, its inference from data, validation that
reports every violation with examples, and the comparison of two dataset versions.

A :class:`DataSchema` holds one :class:`ColumnRule` per column (type, nullability, range,
allowed values, uniqueness) and bounds on the row count. :func:`validate_frame` checks a
pandas DataFrame against it with pandera (lazily, so every failure is collected) and
returns a :class:`ValidationReport`. :func:`diff_datasets` compares the stored schema and
profile of two :class:`~modelhost.entities.DatasetVersion` s without reading their data.

pandas, pandera and PyYAML are imported inside the functions that need them, so that
``import modelhost`` stays fast.

The package, one job per module:

- :mod:`~modelhost.tracking.validation.schema`: :class:`ColumnRule`, :class:`DataSchema`
  and their YAML form;
- :mod:`~modelhost.tracking.validation.infer`: :func:`infer_schema`;
- :mod:`~modelhost.tracking.validation.check`: :func:`validate_frame` (with pandera),
  :class:`ValidationReport`, :class:`CheckFailure`;
- :mod:`~modelhost.tracking.validation.diff`: :func:`diff_datasets`, :class:`DatasetDiff`,
  :class:`ColumnDiff`;
- :mod:`~modelhost.tracking.validation.frames`: :func:`read_frame`, :func:`read_version`.
"""

from modelhost.tracking.validation.check import MAX_EXAMPLES as MAX_EXAMPLES
from modelhost.tracking.validation.check import CheckFailure, ValidationReport, validate_frame
from modelhost.tracking.validation.diff import MEAN_SHIFT_THRESHOLD as MEAN_SHIFT_THRESHOLD
from modelhost.tracking.validation.diff import NULL_RATE_THRESHOLD as NULL_RATE_THRESHOLD
from modelhost.tracking.validation.diff import PSI_THRESHOLD as PSI_THRESHOLD
from modelhost.tracking.validation.diff import ColumnDiff, DatasetDiff, diff_datasets
from modelhost.tracking.validation.frames import read_frame, read_version
from modelhost.tracking.validation.infer import infer_schema
from modelhost.tracking.validation.schema import COLUMN_TYPES, ColumnRule, DataSchema
from modelhost.tracking.validation.schema import SCHEMA_FORMAT as SCHEMA_FORMAT

__all__ = [
    "COLUMN_TYPES",
    "CheckFailure",
    "ColumnDiff",
    "ColumnRule",
    "DataSchema",
    "DatasetDiff",
    "ValidationReport",
    "diff_datasets",
    "infer_schema",
    "read_frame",
    "read_version",
    "validate_frame",
]

"""Experiments, runs, params, metrics, artifacts and dataset versions; data schemas,
validation and the comparison of dataset versions."""

from modelhost.tracking.datasets import Datasets, profile
from modelhost.tracking.runs import ActiveRun, Tracker
from modelhost.tracking.validation import (
    CheckFailure,
    ColumnDiff,
    ColumnRule,
    DataSchema,
    DatasetDiff,
    ValidationReport,
    diff_datasets,
    infer_schema,
    read_frame,
    read_version,
    validate_frame,
)

__all__ = [
    "ActiveRun",
    "CheckFailure",
    "ColumnDiff",
    "ColumnRule",
    "DataSchema",
    "DatasetDiff",
    "Datasets",
    "Tracker",
    "ValidationReport",
    "diff_datasets",
    "infer_schema",
    "profile",
    "read_frame",
    "read_version",
    "validate_frame",
]

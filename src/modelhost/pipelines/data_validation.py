"""The built-in ``validate`` step: every dataset with a ``schema`` is checked against it.

The checks themselves live in :mod:`modelhost.tracking.validation`; this module reads
each dataset version's files, runs them and turns each report into a
:class:`~modelhost.pipelines.result.DatasetValidation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from modelhost.pipelines.data import ResolvedDataset
from modelhost.pipelines.result import DatasetValidation
from modelhost.tracking import validation
from modelhost.tracking.validation import DataSchema, read_frame, validate_frame

# The modules whose code decides the outcome (part of the validate step's cache key).
CODE_MODULES = (validation,)


def validate_datasets(datasets: Mapping[str, ResolvedDataset],
                      schemas: Mapping[str, Path]) -> list[DatasetValidation]:
    """Validate ``datasets[name]`` against the schema file ``schemas[name]``, in order.

    Raises:
        InvalidInputError: a schema file that is not a valid schema.
    """
    results = []
    for name, schema_file in schemas.items():
        dataset = datasets[name]
        schema = DataSchema.load(schema_file)
        report = validate_frame(read_frame(dataset.path), schema)
        results.append(DatasetValidation(dataset=name, ref=dataset.ref, ok=report.ok,
                                         summary=report.summary(), report=report.to_dict()))
    return results


__all__ = ["CODE_MODULES", "validate_datasets"]

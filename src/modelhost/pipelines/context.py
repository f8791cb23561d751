"""What a step function receives: its params, inputs, folders and the tracked run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modelhost.errors import InvalidInputError
from modelhost.tracking import ActiveRun, read_frame


class StepContext:
    """The argument of every step function ``def step(ctx: StepContext) -> dict``.

    Attributes:
        step: the step's name in ``modelhost.yaml``.
        params: the step's ``params`` (read-only).
        inputs: each declared input: a :class:`~pathlib.Path` for a dataset (a file, or a
            folder of files) and the value an earlier step returned otherwise.
        output_dir: an empty folder for files this step writes; return their paths as
            outputs to keep them.
        pipeline_dir: the folder of ``modelhost.yaml``.
        run: the pipeline's tracked run (``modelhost.log_metric`` and friends also work
            inside a step).
    """

    def __init__(self, *, step: str, params: Mapping[str, Any], inputs: Mapping[str, Any],
                 output_dir: Path, pipeline_dir: Path, run: ActiveRun) -> None:
        self.step = step
        self.params: Mapping[str, Any] = MappingProxyType(dict(params))
        self.inputs: Mapping[str, Any] = MappingProxyType(dict(inputs))
        self.output_dir = output_dir
        self.pipeline_dir = pipeline_dir
        self.run = run
        self._metrics: dict[str, float] = {}

    def log_metric(self, key: str, value: float) -> None:
        """Log a metric on the run; gates and ``modelhost reproduce`` compare these."""
        self.log_metrics({key: value})

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        self.run.log_metrics(metrics)
        self._metrics.update({k: float(v) for k, v in metrics.items()})

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics this step logged through the context."""
        return dict(self._metrics)

    def dataframe(self, name: str) -> Any:
        """Input ``name`` as a pandas DataFrame (a dataset's CSV/Parquet files are read;
        a DataFrame from an earlier step is returned as it is)."""
        if name not in self.inputs:
            raise InvalidInputError(f"step {self.step!r} has no input {name!r}; declared: "
                                    f"{', '.join(sorted(self.inputs)) or 'none'}")
        value = self.inputs[name]
        return read_frame(value) if isinstance(value, Path) else value


__all__ = ["StepContext"]

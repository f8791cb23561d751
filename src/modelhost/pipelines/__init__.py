"""Training pipelines with quality gates (``modelhost.yaml``).

    pipeline = load_spec("modelhost.yaml")
    result = PipelineRunner(pipeline, Client()).run(RunOptions(reason="drift alert"))
    print(result.status, result.summary())
    report = reproduce(Client(), "churn", "1.0.0")

See docs/pipelines.md for the spec, the gates, the cache rules and reproduction.
"""

from modelhost.pipelines.context import StepContext
from modelhost.pipelines.errors import (
    PipelineSpecError,
    PipelineStateError,
    ReproduceError,
    StepLoadError,
)
from modelhost.pipelines.gates import GateResult
from modelhost.pipelines.reproduce import MetricComparison, ReproduceReport, reproduce
from modelhost.pipelines.result import (
    DatasetValidation,
    PipelineResult,
    PipelineStatus,
    StepResult,
    StepStatus,
)
from modelhost.pipelines.runner import PipelineRunner, RunOptions, StepObserver
from modelhost.pipelines.spec import Pipeline, PipelineSpec, load_spec, parse_spec

__all__ = [
    "DatasetValidation",
    "GateResult",
    "MetricComparison",
    "Pipeline",
    "PipelineResult",
    "PipelineRunner",
    "PipelineSpec",
    "PipelineSpecError",
    "PipelineStateError",
    "PipelineStatus",
    "ReproduceError",
    "ReproduceReport",
    "RunOptions",
    "StepContext",
    "StepLoadError",
    "StepObserver",
    "StepResult",
    "StepStatus",
    "load_spec",
    "parse_spec",
    "reproduce",
]

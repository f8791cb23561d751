"""What a pipeline run reports: one result per step, the gates, and the outcome."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelhost.pipelines.gates import GateResult


class StepStatus(str, enum.Enum):
    RAN = "ran"
    SKIPPED = "skipped"  # unchanged since a successful run
    FAILED = "failed"
    NOT_RUN = "not run"  # an earlier step failed


class PipelineStatus(str, enum.Enum):
    SUCCEEDED = "succeeded"
    STEP_FAILED = "step_failed"
    VALIDATION_FAILED = "validation_failed"
    GATE_FAILED = "gate_failed"


@dataclass(frozen=True)
class StepResult:
    """One step of a run.

    Attributes:
        kind: ``step`` (yours), ``validate``, ``gate``, ``register`` or ``deploy``.
        message: one line on what happened (``churn@2: all checks passed``).
        error: for a step that raised: ``TypeName: message``.
        traceback: the full traceback of that exception (shown with ``--debug``).
    """

    name: str
    kind: str
    status: StepStatus
    seconds: float = 0.0
    message: str = ""
    error: str | None = None
    traceback: str | None = field(default=None, repr=False)
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "skipped (unchanged)" if self.status is StepStatus.SKIPPED else \
            self.status.value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status.value,
                "seconds": round(self.seconds, 4), "message": self.message,
                "error": self.error, "metrics": dict(self.metrics)}


@dataclass(frozen=True)
class DatasetValidation:
    """The validation of one dataset version against its schema."""

    dataset: str
    ref: str
    ok: bool
    summary: str
    report: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "ref": self.ref, "ok": self.ok,
                "summary": self.summary, "report": dict(self.report)}


@dataclass(frozen=True)
class PipelineResult:
    pipeline: str
    status: PipelineStatus
    run_id: str
    experiment: str
    trigger: str
    reason: str | None
    git_commit: str | None
    git_dirty: bool
    steps: tuple[StepResult, ...]
    datasets: tuple[Mapping[str, Any], ...] = ()
    validation: tuple[DatasetValidation, ...] = ()
    gates: tuple[GateResult, ...] = ()
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    model: str | None = None
    model_version: str | None = None
    registered: bool = False  # this run created the version (not reused from the cache)
    deployed: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status is PipelineStatus.SUCCEEDED

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status is StepStatus.FAILED), None)

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def summary(self) -> str:
        """One line for people: what the run achieved or why it stopped."""
        failed = self.failed_step
        if self.status is PipelineStatus.GATE_FAILED:
            gates = self.failed_gates
            return (f"{len(gates)} of {len(self.gates)} gate{'s' if len(self.gates) > 1 else ''}"
                    " failed; nothing was registered or deployed")
        if self.status is PipelineStatus.VALIDATION_FAILED:
            bad = [v.ref for v in self.validation if not v.ok]
            if not bad and failed is not None:  # the schema itself could not be used
                return f"data validation could not run: {failed.error or failed.message}"
            return f"data validation failed for {', '.join(bad)}; nothing was registered"
        if failed is not None:
            reason = (failed.error or failed.message).strip().splitlines() or ["failed"]
            return f"step {failed.name!r} failed: {reason[0]}"
        if self.deployed is not None and self.model_version is not None:
            return f"{self.model} {self.model_version} is in production"
        if self.model_version is not None:
            how = "registered" if self.registered else "already registered"
            return f"{self.model} {self.model_version} {how}"
        if self.gates:
            return "all gates passed"
        return "pipeline finished"

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "status": self.status.value, "ok": self.ok,
                "summary": self.summary(), "run_id": self.run_id,
                "experiment": self.experiment, "trigger": self.trigger,
                "reason": self.reason, "git_commit": self.git_commit,
                "git_dirty": self.git_dirty, "steps": [s.to_dict() for s in self.steps],
                "datasets": [dict(d) for d in self.datasets],
                "validation": [v.to_dict() for v in self.validation],
                "gates": [g.to_dict() for g in self.gates],
                "params": {k: dict(v) for k, v in self.params.items()},
                "metrics": dict(self.metrics), "model": self.model,
                "model_version": self.model_version, "registered": self.registered,
                "deployed": dict(self.deployed) if self.deployed is not None else None}


__all__ = ["DatasetValidation", "PipelineResult", "PipelineStatus", "StepResult",
           "StepStatus"]

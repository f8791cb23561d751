"""The built-in steps of a pipeline: validate, gate, register and deploy.

Each one builds its step key, reuses its cached record when the runner allows it, or
does its work and saves what it produced; the runner decides the order and tracks the run.

The results of validate, register and deploy live in the store the run writes to (the
validation reports with a tracked run, the version in the registry), not in the work dir.
The lock file may have been written against another store (a fresh ``MODELHOST_HOME``,
another database), so these steps are skipped only when this store holds what their
entry records: the run that stored the validation reports, the version registered by the
recorded run, and, for deploy, that same registration (its run is part of deploy's key).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from modelhost.client import Client
from modelhost.errors import InvalidInputError, NotFoundError
from modelhost.pipelines import candidate as candidate_module
from modelhost.pipelines import data_validation, gates, scoring
from modelhost.pipelines import deploy as deploy_module
from modelhost.pipelines.candidate import Candidate
from modelhost.pipelines.data import ResolvedDataset
from modelhost.pipelines.gates import GateInputs, GateResult, evaluate_gates
from modelhost.pipelines.hashing import file_digest, json_digest
from modelhost.pipelines.loader import module_digest
from modelhost.pipelines.result import DatasetValidation, StepResult, StepStatus
from modelhost.pipelines.spec import DEPLOY, GATE, REGISTER, VALIDATE, Pipeline, PipelineSpec
from modelhost.pipelines.state import LockFile, StepKey, StepRecord
from modelhost.tracking import ActiveRun


class BuiltinRun(Protocol):
    """The state of one run of a pipeline, as the built-in steps read and update it."""

    pipeline: Pipeline
    spec: PipelineSpec
    client: Client
    lock: LockFile
    records: dict[str, StepRecord]
    reason: str | None
    trigger: str
    commit: str | None
    params: dict[str, dict[str, Any]]
    datasets: dict[str, ResolvedDataset]
    metrics: dict[str, float]
    run_handle: ActiveRun | None
    validation: list[DatasetValidation]
    gate_results: list[GateResult]
    model_version: str | None
    registered: bool
    deployed: dict[str, Any] | None

    def cached(self, name: str, key: StepKey) -> StepRecord | None:
        """The lock's record of step ``name`` if the step may be skipped, else None."""
        ...

    def reuse(self, name: str, record: StepRecord) -> None:
        """Take a skipped step's record into this run (its metrics are logged again)."""
        ...

    def save(self, name: str, key: StepKey, *, outputs: Mapping[str, Any] | None = None,
             metrics: Mapping[str, float] | None = None,
             facts: Mapping[str, Any] | None = None) -> StepRecord:
        """Record what step ``name`` produced in this run and in the lock."""
        ...

    def value(self, ref_text: str) -> Any:
        """The value behind an input reference (a dataset path or an earlier output)."""
        ...

    def digest(self, ref_text: str) -> str:
        """The sha256 behind an input reference."""
        ...


# --- validate -----------------------------------------------------------------------


def validate(run: BuiltinRun) -> StepResult:
    """Validate the datasets against their schemas; fails on any invalid one."""
    schemas = {n: run.pipeline.path(d.schema_file)
               for n, d in run.spec.datasets.items() if d.schema_file}
    key = StepKey(
        code=module_digest(data_validation, *data_validation.CODE_MODULES),
        params=json_digest({n: file_digest(p) for n, p in schemas.items()}),
        inputs={n: run.datasets[n].version.digest for n in schemas})
    cached = run.cached(VALIDATE, key)
    if cached is not None and _reports_in_store(run, cached.run_id, list(schemas)):
        run.reuse(VALIDATE, cached)
        run.validation = [DatasetValidation(**v) for v in cached.facts["validation"]]
        return StepResult(name=VALIDATE, kind=VALIDATE, status=StepStatus.SKIPPED,
                          message=_validation_line(run.validation))
    run.validation = data_validation.validate_datasets(run.datasets, schemas)
    _log_validation_reports(run)
    line = _validation_line(run.validation)
    if not all(v.ok for v in run.validation):
        run.lock.drop(VALIDATE)
        details = "\n".join(v.summary for v in run.validation if not v.ok)
        return StepResult(name=VALIDATE, kind=VALIDATE, status=StepStatus.FAILED,
                          message=line, error=details)
    facts = {"validation": [{"dataset": v.dataset, "ref": v.ref, "ok": v.ok,
                             "summary": v.summary} for v in run.validation]}
    run.save(VALIDATE, key, facts=facts)
    return StepResult(name=VALIDATE, kind=VALIDATE, status=StepStatus.RAN, message=line)


def _reports_in_store(run: BuiltinRun, run_id: str, datasets: list[str]) -> bool:
    """Whether this store holds the run that stored the validation reports of a cached
    validate step (a lock written against another store names a run this one lacks)."""
    try:
        artifacts = run.client.tracking.get_run(run_id).artifacts
    except (NotFoundError, InvalidInputError):
        return False
    return all(_report_name(name) in artifacts for name in datasets)


def _report_name(dataset: str) -> str:
    return f"pipeline/validation/{dataset}.json"


def _log_validation_reports(run: BuiltinRun) -> None:
    assert run.run_handle is not None
    with tempfile.TemporaryDirectory(prefix="modelhost-validation-") as tmp:
        for v in run.validation:
            file = Path(tmp) / f"{v.dataset}.json"
            file.write_text(json.dumps(v.to_dict(), indent=2, default=str),
                            encoding="utf-8")
            run.run_handle.log_artifact(file, name=_report_name(v.dataset))


# --- gate ---------------------------------------------------------------------------


def _candidate_refs(run: BuiltinRun) -> dict[str, str]:
    model = run.spec.model
    if model is None:
        return {}
    refs = {"model": model.output, "input_example": model.input_example,
            "holdout": model.holdout}
    return {k: v for k, v in refs.items() if v is not None}


def gate(run: BuiltinRun) -> StepResult:
    """Evaluate the quality gates on the candidate model; fails if any fails."""
    refs = _candidate_refs(run)
    model = run.spec.model
    key = StepKey(
        code=module_digest(gates, scoring, candidate_module),
        params=json_digest({"gates": [g.model_dump() for g in run.spec.gates],
                            "model": model.model_dump() if model else None}),
        inputs={**{k: run.digest(v) for k, v in refs.items()},
                "metrics": json_digest(run.metrics),
                "validation": json_digest({v.dataset: v.ok for v in run.validation})})
    cached = run.cached(GATE, key)
    if cached is not None and _verdict_holds(run, cached):
        run.reuse(GATE, cached)
        run.gate_results = [GateResult.from_dict(g) for g in cached.facts["gates"]]
        return StepResult(name=GATE, kind=GATE, status=StepStatus.SKIPPED,
                          message=f"{len(run.gate_results)} passed")
    candidate = _candidate(run)
    try:
        run.gate_results = evaluate_gates(run.spec.gates, GateInputs(
            metrics=dict(run.metrics), registry=run.client.registry,
            candidate=candidate,
            holdout=run.value(refs["holdout"]) if "holdout" in refs else None,
            target=model.target if model else None,
            model_name=model.name if model else None,
            validation={v.dataset: v.ok for v in run.validation},
            datasets=list(run.spec.datasets)))
    finally:
        if candidate is not None:
            candidate.close()
    failed = [g for g in run.gate_results if not g.passed]
    if failed:
        run.lock.drop(GATE)
        error = "; ".join(f"{g.name}: {g.message}" for g in failed)
        return StepResult(name=GATE, kind=GATE, status=StepStatus.FAILED,
                          message=f"{len(failed)} of {len(run.gate_results)} failed",
                          error=error)
    run.save(GATE, key, facts={"gates": [g.to_dict() for g in run.gate_results],
                               "production": _production(run)[0]})
    return StepResult(name=GATE, kind=GATE, status=StepStatus.RAN,
                      message=f"{len(run.gate_results)} passed")


def _production(run: BuiltinRun) -> tuple[str, str | None]:
    """What a "not worse than production" gate compares with in the store this run
    writes to: the production version and its artifact ("" when no gate compares,
    "none" without a production version), and the run that registered it."""
    model = run.spec.model
    if model is None or not any(g.kind == "not_worse_than_production"
                                for g in run.spec.gates):
        return "", None
    try:
        production = run.client.registry.get_version(model.name, "@production")
    except NotFoundError:
        return "none", None
    return f"{production.version}:{production.artifact_digest}", production.lineage.run_id


def _verdict_holds(run: BuiltinRun, cached: StepRecord) -> bool:
    """A cached gate verdict holds while production is what it was compared with, or is
    the version this pipeline itself registered since (its own candidate): not against
    another store, nor after someone else changed production."""
    identity, registered_by = _production(run)
    if identity == cached.facts.get("production", ""):
        return True
    ours = run.lock.get(REGISTER)
    return registered_by is not None and ours is not None and registered_by == ours.run_id


def _candidate(run: BuiltinRun) -> Candidate | None:
    model = run.spec.model
    if model is None:
        return None
    example = run.value(model.input_example) if model.input_example else None
    if example is None and model.holdout and model.target:
        holdout = run.value(model.holdout)
        if hasattr(holdout, "drop") and model.target in getattr(holdout, "columns", ()):
            example = holdout.drop(columns=[model.target])
    return Candidate(run.value(model.output), flavor=model.flavor, example=example)


# --- register -----------------------------------------------------------------------


def register(run: BuiltinRun) -> StepResult:
    """Register the candidate model as a new version, with its lineage."""
    model = run.spec.model
    register = run.spec.register_
    assert model is not None and register is not None and run.run_handle is not None
    refs = _candidate_refs(run)
    dataset_refs = sorted(d.ref for d in run.datasets.values())
    key = StepKey(
        code=module_digest(deploy_module),
        params=json_digest({"model": model.model_dump(),
                            "register": register.model_dump()}),
        inputs={**{k: run.digest(v) for k, v in refs.items() if k != "holdout"},
                "metrics": json_digest(run.metrics), "params": json_digest(run.params),
                "datasets": json_digest(dataset_refs)})
    cached = run.cached(REGISTER, key)
    if cached is not None and _registered_here(run, model.name,
                                               str(cached.facts.get("version")),
                                               run_id=cached.run_id):
        run.reuse(REGISTER, cached)
        run.model_version = str(cached.facts["version"])
        return StepResult(name=REGISTER, kind=REGISTER, status=StepStatus.SKIPPED,
                          message=f"{model.name} {run.model_version}")
    candidate = _candidate(run)
    assert candidate is not None
    tags = {"pipeline": run.spec.name, "pipeline.trigger": run.trigger,
            **register.tags}
    if run.reason:
        tags["pipeline.reason"] = run.reason
    flat = {f"{s}.{k}": v for s, values in run.params.items() for k, v in values.items()}
    version = run.client.registry.register(
        candidate.model, name=model.name, flavor=model.flavor,
        input_example=candidate.example, metrics=dict(run.metrics), params=flat,
        tags=tags, description=register.description or run.spec.description,
        run_id=run.run_handle.run_id, git_commit=run.commit,
        code_dir=run.pipeline.folder,
        datasets=[d.version for d in run.datasets.values()])
    run.model_version, run.registered = version.version, True
    run.save(REGISTER, key, facts={"model": model.name, "version": version.version})
    return StepResult(name=REGISTER, kind=REGISTER, status=StepStatus.RAN,
                      message=f"{model.name} {version.version}")


def _registered_here(run: BuiltinRun, model: str, version: str, *, run_id: str) -> bool:
    """Whether this store has ``model`` ``version`` registered by the run ``run_id``: a
    version of that number from elsewhere (another pipeline, another store) is not ours."""
    try:
        found = run.client.registry.get_version(model, version)
    except (NotFoundError, InvalidInputError):
        return False
    return found.lineage.run_id == run_id


# --- deploy -------------------------------------------------------------------------


def deploy(run: BuiltinRun) -> StepResult:
    """Deploy the registered version with the spec's strategy."""
    deploy = run.spec.deploy
    model = run.spec.model
    assert deploy is not None and model is not None and run.model_version is not None
    # The registering run tells this registration from a version of the same number
    # registered anew (in a fresh store), which has not been deployed yet.
    key = StepKey(code=module_digest(deploy_module),
                  params=json_digest(deploy.model_dump()),
                  inputs={"version": f"{model.name}@{run.model_version}",
                          "registered_by": run.records[REGISTER].run_id})
    cached = run.cached(DEPLOY, key)
    if cached is not None:
        run.reuse(DEPLOY, cached)
        run.deployed = dict(cached.facts)
        return StepResult(name=DEPLOY, kind=DEPLOY, status=StepStatus.SKIPPED,
                          message=f"{model.name} {run.model_version} "
                                  f"({deploy_module.normalize(deploy.strategy)})")
    assert run.run_handle is not None
    why = f"pipeline {run.spec.name}, run {run.run_handle.run_id[:8]}"
    if run.reason:
        why += f": {run.reason}"
    strategy = deploy_module.get_strategy(deploy.strategy)
    outcome = strategy.deploy(run.client.registry, model.name, run.model_version,
                              options=deploy.options, reason=why,
                              rollouts=run.client.rollouts)
    run.deployed = outcome.to_dict()
    run.save(DEPLOY, key, facts=json.loads(json.dumps(run.deployed, default=str)))
    if outcome.deployment is not None and outcome.deployment.get("state") == "progressing":
        moved = "rollout started"
    else:
        moved = "promoted to production" if outcome.changes else "already in production"
    return StepResult(name=DEPLOY, kind=DEPLOY, status=StepStatus.RAN,
                      message=f"{model.name} {run.model_version} {moved} "
                              f"({strategy.name})")


def _validation_line(results: list[DatasetValidation]) -> str:
    return "; ".join(f"{v.ref}: {'passed' if v.ok else 'FAILED'}" for v in results)


__all__ = ["BuiltinRun", "deploy", "gate", "register", "validate"]

"""Running a pipeline: every step in order, inside one tracked run, with a step cache.

The run records the git commit of the pipeline's folder, every step's params, the
metrics steps log, the dataset versions used, why the run started (``--reason``), the
gate results and a ``pipeline/record.json`` artifact that ``modelhost reproduce`` reads.

A step is skipped when its code hash, params hash and input hashes equal those of its
entry in ``modelhost.lock`` and its outputs are still intact in the work dir; its outputs
are then read from there and its metrics logged on the new run again. The built-in steps
whose results live in the store (validate, register, deploy) are also checked against the
store this run writes to (see ``builtin_steps``). A step that fails
stops the pipeline; the steps before it stay cached, so running again resumes there.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelhost import fluent
from modelhost._utils import check_key, utcnow, validate_name
from modelhost.client import Client
from modelhost.entities import RunStatus
from modelhost.errors import ModelhostError
from modelhost.pipelines import builtin_steps, git
from modelhost.pipelines.context import StepContext
from modelhost.pipelines.data import ResolvedDataset, resolve_datasets
from modelhost.pipelines.gates import GateResult
from modelhost.pipelines.hashing import json_digest
from modelhost.pipelines.loader import (
    LoadedStep,
    code_digest,
    load_steps,
    user_code,
)
from modelhost.pipelines.outputs import (
    OutputError,
    load_output,
    output_intact,
    reset_folder,
    save_output,
)
from modelhost.pipelines.result import (
    DatasetValidation,
    PipelineResult,
    PipelineStatus,
    StepResult,
    StepStatus,
)
from modelhost.pipelines.spec import (
    DEPLOY,
    GATE,
    REGISTER,
    VALIDATE,
    Pipeline,
    parse_ref,
)
from modelhost.pipelines.state import LockFile, StepKey, StepRecord
from modelhost.tracking import ActiveRun

RECORD_ARTIFACT = "pipeline/record.json"
RECORD_VERSION = 1


@dataclass(frozen=True)
class RunOptions:
    """How to run a pipeline.

    Attributes:
        reason: why the run started (a retraining trigger); such a run also takes the
            newest version of every dataset.
        force: run every step, ignoring the cache (the lock is still updated).
        release: run the gate, register and deploy steps (``reproduce`` does not).
        write_lock: read and update ``modelhost.lock`` (``reproduce`` does neither).
        work_dir: where step outputs go (default: the spec's ``work_dir``).
        dataset_versions: dataset name -> version to use, whatever the spec says.
        params: step -> param -> value, replacing the spec's values.
        tags: extra tags for the tracked run.
        trigger: ``manual``, ``retrain`` (the default with a reason) or ``reproduce``.
    """

    reason: str | None = None
    force: bool = False
    release: bool = True
    write_lock: bool = True
    work_dir: Path | None = None
    dataset_versions: Mapping[str, int] = field(default_factory=dict)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    trigger: str | None = None


class StepObserver(Protocol):
    """Told when each step starts and ends (the CLI prints from this)."""

    def started(self, step: str) -> None: ...

    def finished(self, result: StepResult) -> None: ...


class _Silent:
    def started(self, step: str) -> None:
        return None

    def finished(self, result: StepResult) -> None:
        return None


class PipelineRunner:
    """Runs one pipeline against one client (the registry and tracking it writes to)."""

    def __init__(self, pipeline: Pipeline, client: Client, *,
                 observer: StepObserver | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.pipeline = pipeline
        self.client = client
        self.observer: StepObserver = observer or _Silent()
        self.clock = clock

    def run(self, options: RunOptions | None = None) -> PipelineResult:
        """Run the pipeline; failures of steps, validation and gates are in the result.

        Raises:
            PipelineSpecError, StepLoadError, PipelineStateError: before anything ran.
            ModelhostError: a dataset cannot be versioned or found (the run is FAILED).
        """
        options = options or RunOptions()
        modules = [s.call.partition(":")[0] for s in self.pipeline.spec.steps.values()]
        with user_code(self.pipeline.folder, modules):
            steps = load_steps(self.pipeline)
            return _Execution(self, steps, options).run()


@contextlib.contextmanager
def _active(run: ActiveRun) -> Iterator[None]:
    """Make ``run`` the active run of ``modelhost.log_*`` while a step runs."""
    with fluent.use_run(run):
        yield


class _Execution:
    """The state of one run of a pipeline."""

    def __init__(self, runner: PipelineRunner, steps: dict[str, LoadedStep],
                 options: RunOptions) -> None:
        self.pipeline = runner.pipeline
        self.spec = runner.pipeline.spec
        self.client = runner.client
        self.observer = runner.observer
        self.clock = runner.clock
        self.steps = steps
        self.options = options
        self.work = (options.work_dir or self.pipeline.work_dir).resolve()
        self.lock = LockFile.load(self.pipeline.lock_file) if options.write_lock else \
            LockFile(self.pipeline.lock_file, save=False)
        self.params = _merged_params(self.spec.steps, options.params)
        self.reason = options.reason
        self.trigger = options.trigger or ("retrain" if options.reason else "manual")
        self.commit = git.commit(self.pipeline.folder)
        self.dirty = git.is_dirty(self.pipeline.folder) if self.commit else False
        self.datasets: dict[str, ResolvedDataset] = {}
        self.records: dict[str, StepRecord] = {}  # step -> what it produced this run
        self._values: dict[tuple[str, str], Any] = {}
        self.metrics: dict[str, float] = {}
        self.validation: list[DatasetValidation] = []
        self.gate_results: list[GateResult] = []
        self.model_version: str | None = None
        self.registered = False
        self.deployed: dict[str, Any] | None = None
        self.run_handle: ActiveRun | None = None

    # --- the run ------------------------------------------------------------------------

    def run(self) -> PipelineResult:
        run = self._start_run()
        self.run_handle = run
        results: list[StepResult] = []
        status = PipelineStatus.STEP_FAILED
        try:
            self.datasets = resolve_datasets(
                self.spec.datasets, self.client.datasets, folder=self.pipeline.folder,
                newest=self.options.reason is not None, pinned=self.options.dataset_versions,
                cache=self.work / "data")
            if self.datasets:
                self.client.tracking.store.log_datasets(
                    run.run_id, [(d.name, d.version.version) for d in self.datasets.values()])
            status = PipelineStatus.SUCCEEDED
            names = self.pipeline.step_names(release=self.options.release)
            for index, name in enumerate(names):
                self.observer.started(name)
                result = self._step(name)
                results.append(result)
                self.observer.finished(result)
                if result.status is StepStatus.FAILED:
                    status = _failure_status(name)
                    for later in names[index + 1:]:
                        skipped = StepResult(name=later, kind=_kind(later),
                                             status=StepStatus.NOT_RUN)
                        results.append(skipped)
                        self.observer.finished(skipped)
                    break
        except BaseException:
            status = PipelineStatus.STEP_FAILED
            raise
        finally:
            self._finish(run, results, status)
        return self._result(run, results, status)

    def _start_run(self) -> ActiveRun:
        experiment = validate_name(self.spec.experiment_name, "experiment")
        flat = {check_key(f"{step}.{key}", "param"): _param_text(value)
                for step, values in self.params.items() for key, value in values.items()}
        tags = {"pipeline.name": self.spec.name, "pipeline.spec": self.pipeline.file.name,
                "pipeline.spec_sha256": self.pipeline.digest, "pipeline.trigger": self.trigger,
                "pipeline.git_dirty": str(self.dirty).lower(), **self.options.tags}
        if self.options.reason:
            tags["pipeline.reason"] = self.options.reason
        if self.commit:
            tags["pipeline.git_commit"] = self.commit
        tags = {check_key(k, "tag"): str(v) for k, v in tags.items()}
        name = f"{self.spec.name} ({self.trigger})"
        # The run's commit is that of the pipeline's folder, not of the current folder.
        return self.client.tracking.start_run(experiment, name=name, params=flat, tags=tags,
                                              code_dir=self.pipeline.folder)

    def _finish(self, run: ActiveRun, results: list[StepResult],
                status: PipelineStatus) -> None:
        tags = {"pipeline.status": status.value}
        tags.update({f"pipeline.step.{r.name}": r.status.value for r in results})
        if self.model_version:
            tags["pipeline.model_version"] = self.model_version
        try:
            self.client.tracking.store.set_tags(run.run_id, tags)
            self._log_record(run, results, status)
        finally:
            run.end(RunStatus.FINISHED if status is PipelineStatus.SUCCEEDED
                    else RunStatus.FAILED)

    def _log_record(self, run: ActiveRun, results: list[StepResult],
                    status: PipelineStatus) -> None:
        record = {
            "record_version": RECORD_VERSION, "pipeline": self.spec.name,
            "spec_file": self.pipeline.file.name, "spec_path": str(self.pipeline.file),
            "spec_in_repo": _in_repo(self.pipeline.file), "spec_sha256": self.pipeline.digest,
            "git_commit": self.commit, "git_dirty": self.dirty, "trigger": self.trigger,
            "reason": self.options.reason, "status": status.value,
            "params": self.params, "metrics": self.metrics,
            "datasets": {n: d.version.version for n, d in self.datasets.items()},
            "steps": [r.to_dict() for r in results],
            "gates": [g.to_dict() for g in self.gate_results],
            "validation": [v.to_dict() for v in self.validation],
            "model": self.spec.model.name if self.spec.model else None,
            "model_version": self.model_version,
        }
        with tempfile.TemporaryDirectory(prefix="modelhost-record-") as tmp:
            file = Path(tmp) / "record.json"
            file.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
            run.log_artifact(file, name=RECORD_ARTIFACT)
            spec_copy = Path(tmp) / self.pipeline.file.name
            spec_copy.write_text(self.pipeline.text, encoding="utf-8")
            run.log_artifact(spec_copy, name=f"pipeline/{self.pipeline.file.name}")

    def _result(self, run: ActiveRun, results: list[StepResult],
                status: PipelineStatus) -> PipelineResult:
        return PipelineResult(
            pipeline=self.spec.name, status=status, run_id=run.run_id,
            experiment=run.experiment, trigger=self.trigger, reason=self.options.reason,
            git_commit=self.commit, git_dirty=self.dirty, steps=tuple(results),
            datasets=tuple(d.to_dict() for d in self.datasets.values()),
            validation=tuple(self.validation), gates=tuple(self.gate_results),
            params=self.params, metrics=dict(self.metrics),
            model=self.spec.model.name if self.spec.model else None,
            model_version=self.model_version, registered=self.registered,
            deployed=self.deployed)

    # --- one step -----------------------------------------------------------------------

    def _step(self, name: str) -> StepResult:
        started = self.clock()
        try:
            if name == VALIDATE:
                result = builtin_steps.validate(self)
            elif name == GATE:
                result = builtin_steps.gate(self)
            elif name == REGISTER:
                result = builtin_steps.register(self)
            elif name == DEPLOY:
                result = builtin_steps.deploy(self)
            else:
                result = self._user_step(name)
        except ModelhostError as exc:
            self.lock.drop(name)
            result = StepResult(name=name, kind=_kind(name), status=StepStatus.FAILED,
                                error=exc.message, message=exc.message)
        return _timed(result, self.clock() - started)

    def cached(self, name: str, key: StepKey) -> StepRecord | None:
        if self.options.force or not self.options.write_lock:
            return None
        record = self.lock.get(name)
        if record is None or record.key != key:
            return None
        if not all(output_intact(o, self.work) for o in record.outputs.values()):
            return None
        return record

    def reuse(self, name: str, record: StepRecord) -> None:
        self.records[name] = record
        if record.metrics:
            self._log_metrics(dict(record.metrics))

    def _log_metrics(self, metrics: Mapping[str, float]) -> None:
        assert self.run_handle is not None
        self.run_handle.log_metrics(metrics)
        self.metrics.update(metrics)

    def save(self, name: str, key: StepKey, *, outputs: Mapping[str, Any] | None = None,
              metrics: Mapping[str, float] | None = None,
              facts: Mapping[str, Any] | None = None) -> StepRecord:
        assert self.run_handle is not None
        record = StepRecord(key=key, outputs=dict(outputs or {}), metrics=dict(metrics or {}),
                            facts=dict(facts or {}), run_id=self.run_handle.run_id,
                            completed_at=utcnow().isoformat(timespec="seconds"))
        self.records[name] = record
        self.lock.put(name, record)
        return record

    def value(self, ref_text: str) -> Any:
        """The value behind an input reference (a dataset path or an earlier output)."""
        ref = parse_ref(ref_text)
        if ref.is_dataset:
            return self.datasets[ref.name].path
        key = (ref.source, ref.name)
        if key not in self._values:
            self._values[key] = load_output(self.records[ref.source].outputs[ref.name],
                                            self.work)
        return self._values[key]

    def digest(self, ref_text: str) -> str:
        ref = parse_ref(ref_text)
        if ref.is_dataset:
            return self.datasets[ref.name].version.digest
        return self.records[ref.source].outputs[ref.name].sha256

    # --- your steps ---------------------------------------------------------------------

    def _user_step(self, name: str) -> StepResult:
        spec = self.spec.steps[name]
        loaded = self.steps[name]
        params = self.params.get(name, {})
        key = StepKey(code=code_digest(loaded, self.pipeline), params=json_digest(params),
                      inputs={k: self.digest(v) for k, v in spec.inputs.items()})
        cached = self.cached(name, key)
        if cached is not None:
            self.reuse(name, cached)
            return StepResult(name=name, kind="step", status=StepStatus.SKIPPED,
                              message=_metrics_line(cached.metrics), metrics=cached.metrics)
        assert self.run_handle is not None
        folder = reset_folder(self.work / "outputs" / name)
        inputs = {k: self.value(v) for k, v in spec.inputs.items()}
        ctx = StepContext(step=name, params=params, inputs=inputs, output_dir=folder,
                          pipeline_dir=self.pipeline.folder, run=self.run_handle)
        before = dict(self.run_handle.info.metrics)
        try:
            with _active(self.run_handle):
                returned = loaded.function(ctx)
        except Exception as exc:  # noqa: BLE001  # a user step may raise anything
            self.lock.drop(name)
            return StepResult(name=name, kind="step", status=StepStatus.FAILED,
                              error=f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc())
        after = dict(self.run_handle.info.metrics)
        metrics = {k: v for k, v in after.items() if before.get(k) != v}
        metrics.update(ctx.metrics)
        self.metrics.update(metrics)
        outputs = _check_outputs(name, spec.outputs, returned)
        records = {out: save_output(out, value, step=name, folder=folder, work_dir=self.work)
                   for out, value in outputs.items()}
        for out, value in outputs.items():
            self._values[(name, out)] = value if not isinstance(value, Path) else \
                load_output(records[out], self.work)
        self.save(name, key, outputs=records, metrics=metrics)
        return StepResult(name=name, kind="step", status=StepStatus.RAN,
                          message=_metrics_line(metrics), metrics=metrics)


# --- helpers ------------------------------------------------------------------------------


def _merged_params(steps: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    merged = {name: dict(step.params) for name, step in steps.items()}
    for step, values in overrides.items():
        if step in merged:
            merged[step].update(values)
    return merged


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _check_outputs(step: str, declared: list[str], returned: Any) -> dict[str, Any]:
    if returned is None:
        returned = {}
    if not isinstance(returned, Mapping):
        raise OutputError(f"step {step!r} must return a dict of its outputs "
                          f"({', '.join(declared) or 'none declared'}), not "
                          f"{type(returned).__name__}")
    missing = [o for o in declared if o not in returned]
    extra = [str(o) for o in returned if o not in declared]
    if missing:
        raise OutputError(f"step {step!r} did not return its declared output(s) "
                          f"{', '.join(missing)}")
    if extra:
        raise OutputError(f"step {step!r} returned undeclared output(s) {', '.join(extra)};"
                          " declare them under 'outputs'")
    return {o: returned[o] for o in declared}


def _failure_status(step: str) -> PipelineStatus:
    if step == VALIDATE:
        return PipelineStatus.VALIDATION_FAILED
    if step == GATE:
        return PipelineStatus.GATE_FAILED
    return PipelineStatus.STEP_FAILED


def _kind(step: str) -> str:
    return step if step in (VALIDATE, GATE, REGISTER, DEPLOY) else "step"


def _timed(result: StepResult, seconds: float) -> StepResult:
    from dataclasses import replace

    return replace(result, seconds=seconds)


def _metrics_line(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def _in_repo(file: Path) -> str | None:
    top = git.toplevel(file.parent)
    if top is None:
        return None
    try:
        return file.resolve().relative_to(top).as_posix()
    except ValueError:
        return None


__all__ = ["RECORD_ARTIFACT", "PipelineRunner", "RunOptions", "StepObserver"]

"""Tracked runs: a context manager that logs params, metrics, artifacts, data and models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from modelhost._paths import safe_relpath
from modelhost._utils import check_key, finite_number, validate_name
from modelhost.artifacts import ArtifactStore
from modelhost.entities import DatasetVersion, MetricPoint, ModelVersion, Run, RunStatus
from modelhost.errors import FileNotFoundInputError, InvalidInputError
from modelhost.registry import Registry, environment
from modelhost.store import TrackingStore
from modelhost.tracking.datasets import Datasets


class Tracker:
    """Creates runs and reads them back."""

    def __init__(self, store: TrackingStore, *, datasets: Datasets, registry: Registry,
                 artifacts: ArtifactStore,
                 references: Callable[[], set[str]] | None = None) -> None:
        self.store = store
        self.references = references or store.artifact_digests
        self._datasets = datasets
        self._registry = registry
        self._artifacts = artifacts

    def start_run(self, experiment: str, *, name: str | None = None,
                  params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, str] | None = None,
                  code_dir: Path | None = None) -> ActiveRun:
        """Start a run; its git commit is that of ``code_dir`` (default: the current
        folder), None outside git."""
        validate_name(experiment, "experiment")
        # Everything is checked before the run row exists, so a bad value leaves no run.
        clean_params = {_key(k): str(v) for k, v in (params or {}).items()}
        clean_tags = {_key(k): str(v) for k, v in (tags or {}).items()}
        if name is not None and (not name.strip() or len(name) > 250):
            raise InvalidInputError("a run name has 1-250 characters")
        run = self.store.create_run(experiment, name=name,
                                    git_commit=environment.git_commit(code_dir),
                                    tags=clean_tags, params=clean_params)
        return ActiveRun(run, tracker=self)

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(run_id)

    def list_runs(self, experiment: str | None = None, *, limit: int = 100) -> list[Run]:
        return self.store.list_runs(experiment, limit=limit)


class ActiveRun:
    """A run in progress. As a context manager it ends FINISHED, or FAILED on an error."""

    def __init__(self, run: Run, *, tracker: Tracker) -> None:
        self.run_id = run.run_id
        self.experiment = run.experiment
        self._tracker = tracker
        self._git_commit = run.git_commit

    @property
    def info(self) -> Run:
        return self._tracker.store.get_run(self.run_id)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._tracker.store.log_params(self.run_id, {_key(k): str(v) for k, v in params.items()})

    def log_metric(self, key: str, value: float, *, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        clean = {_key(key): finite_number(f"metric {key!r}", value)
                 for key, value in metrics.items()}
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)
                                 or step < 0):
            raise InvalidInputError(f"step must be a whole number >= 0, got {step!r}")
        self._tracker.store.log_metrics(self.run_id, clean, step=step)

    def metric_history(self, key: str) -> list[MetricPoint]:
        return self._tracker.store.metric_history(self.run_id, key)

    def set_tag(self, key: str, value: str) -> None:
        self._tracker.store.set_tags(self.run_id, {_key(key): str(value)})

    def log_artifact(self, path: str | Path, *, name: str | None = None) -> str:
        """Store a file or folder with the run; returns its sha256 (of the tree)."""
        source = Path(path)
        if not source.exists():
            raise FileNotFoundInputError(str(path))
        relative = safe_relpath(name or source.name)
        artifacts = self._tracker._artifacts
        tree = artifacts.put_tree(source)
        try:
            self._tracker.store.log_artifact(self.run_id, relative, tree.digest, tree.size)
        except BaseException:
            artifacts.discard_unreferenced(tree.created_blobs,
                                           in_use=self._tracker.references())
            raise
        return tree.digest

    def log_dataset(self, path: str | Path, *, name: str) -> DatasetVersion:
        """Version a data file or folder and record that this run used it."""
        dv, _ = self._tracker._datasets.add(path, name=name)
        self._tracker.store.log_datasets(self.run_id, [(dv.name, dv.version)])
        return dv

    def log_model(self, model: object, *, name: str, **kwargs: Any) -> ModelVersion:
        """Register ``model`` as a new version of ``name`` with lineage to this run.

        The version records this run, its params and latest metrics (unless given),
        every dataset logged to the run, and the run's git commit. Other keyword
        arguments are those of :meth:`Registry.register`.
        """
        run = self.info
        kwargs.setdefault("params", dict(run.params))
        kwargs.setdefault("metrics", dict(run.metrics))
        datasets = list(kwargs.pop("datasets", ())) + list(run.datasets)
        if kwargs.get("reference_data") is None and len(datasets) == 1:
            for key, value in self._reference_from(datasets[0]).items():
                kwargs.setdefault(key, value)
            if kwargs.get("reference_data") is None:
                kwargs.pop("reference_data", None)
        return self._tracker._registry.register(
            model, name=name, run_id=self.run_id, git_commit=self._git_commit,
            datasets=list(dict.fromkeys(datasets)), **kwargs)

    def _reference_from(self, dataset: DatasetVersion | str) -> dict[str, Any]:
        """The run's one dataset as the reference data of the model it logs (with
        several, which one is the training data is the caller's to say, with
        ``reference_data``): its columns the signature names become the reference
        profile; if it has not all of them (features built in code), the version is
        registered without one. A dataset that cannot be read is left to the registry's
        own checks of the lineage."""
        from modelhost.errors import InvalidInputError, NotFoundError
        from modelhost.tracking.datasets import read_version

        datasets = self._tracker._datasets
        try:
            if isinstance(dataset, str):
                name, _, number = dataset.partition("@")
                if not number.isdigit():
                    return {}
                dataset = datasets.get(name, int(number))
            frame = read_version(datasets, dataset)
        except (NotFoundError, InvalidInputError):
            return {}
        return {"reference_data": frame,
                "reference_source": f"dataset {dataset.name}@{dataset.version}",
                "reference_optional": True}

    def end(self, status: RunStatus = RunStatus.FINISHED) -> Run:
        return self._tracker.store.end_run(self.run_id, status)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.end(RunStatus.FAILED if exc_type is not None else RunStatus.FINISHED)



def _key(key: object) -> str:
    return check_key(key)

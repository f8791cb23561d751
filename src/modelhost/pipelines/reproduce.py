"""``modelhost reproduce NAME VERSION``: re-run the pipeline behind a model version.

From the version's lineage: the run that registered it, and from that run's
``pipeline/record.json``: the git commit, the params of every step and the dataset
versions. The pipeline runs again in a temporary ``git worktree`` of that commit when the
repository has it (otherwise on the current files, with a note saying so), on the
recorded dataset versions written back from the dataset store, without the cache and
without gates, registration or deployment. Each metric the original run logged is then
compared with the new one.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelhost.client import Client
from modelhost.entities import Run
from modelhost.pipelines import git
from modelhost.pipelines.errors import ReproduceError
from modelhost.pipelines.result import PipelineResult
from modelhost.pipelines.runner import RECORD_ARTIFACT, PipelineRunner, RunOptions, StepObserver
from modelhost.pipelines.spec import Pipeline, load_spec

DEFAULT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    original: float
    reproduced: float | None
    diff: float | None  # reproduced - original
    within: bool

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "original": self.original,
                "reproduced": self.reproduced, "diff": self.diff, "within": self.within}


@dataclass(frozen=True)
class ReproduceReport:
    model: str
    version: str
    original_run_id: str
    git_commit: str | None
    mode: str  # "worktree" (the recorded commit) or "in_place" (the current files)
    tolerance: float
    datasets: Mapping[str, int]
    comparisons: tuple[MetricComparison, ...]
    result: PipelineResult
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.result.ok and bool(self.comparisons) and all(
            c.within for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "ok": self.ok,
                "original_run_id": self.original_run_id, "run_id": self.result.run_id,
                "git_commit": self.git_commit, "mode": self.mode,
                "tolerance": self.tolerance, "datasets": dict(self.datasets),
                "metrics": [c.to_dict() for c in self.comparisons],
                "notes": list(self.notes), "pipeline": self.result.to_dict()}


def load_record(client: Client, run: Run) -> dict[str, Any]:
    """The ``pipeline/record.json`` a pipeline run stored with itself.

    Raises:
        ReproduceError: the run was not started by ``modelhost pipeline run``.
    """
    digest = run.artifacts.get(RECORD_ARTIFACT)
    if digest is None:
        raise ReproduceError(f"run {run.run_id}", "it was not started by 'modelhost pipeline "
                                                  "run' (it has no pipeline record)")
    with tempfile.TemporaryDirectory(prefix="modelhost-record-") as tmp:
        folder = client.artifacts.get_tree(digest, Path(tmp) / "record")
        files = [p for p in folder.rglob("*.json") if p.is_file()]
        record: dict[str, Any] = json.loads(files[0].read_text(encoding="utf-8"))
    return record


def reproduce(client: Client, name: str, ref: str, *, spec: Path | None = None,
              tolerance: float = DEFAULT_TOLERANCE,
              observer: StepObserver | None = None) -> ReproduceReport:
    """Re-run the pipeline that produced ``name`` ``ref`` and compare its metrics.

    Args:
        spec: the pipeline's ``modelhost.yaml`` (default: where the original run found it).
        tolerance: the largest absolute difference per metric that still matches.

    Raises:
        ReproduceError: the version has no pipeline run in its lineage, or its spec cannot
            be found.
    """
    if tolerance < 0:
        raise ReproduceError(f"{name} {ref}", "the tolerance must be >= 0")
    version = client.registry.get_version(name, ref)
    what = f"{name} {version.version}"
    run_id = version.lineage.run_id
    if not run_id:
        raise ReproduceError(what, "its lineage records no run; only versions registered by "
                                   "'modelhost pipeline run' can be reproduced")
    run = client.tracking.get_run(run_id)
    record = load_record(client, run)
    spec_file = _spec_file(spec, record, what)
    # The record has the commit of the pipeline's folder (None outside git); the lineage
    # may hold the commit of whatever folder the process ran in.
    commit = record.get("git_commit", version.lineage.git_commit)
    notes: list[str] = []
    if record.get("git_dirty"):
        notes.append("the original run had uncommitted changes, which its commit does not "
                     "contain; the result may differ")
    pinned = {str(k): int(v) for k, v in (record.get("datasets") or {}).items()}
    params = {str(k): dict(v) for k, v in (record.get("params") or {}).items()}
    with tempfile.TemporaryDirectory(prefix="modelhost-reproduce-") as tmp, \
            _checkout(spec_file, commit, Path(tmp), notes) as (pipeline, mode):
        if mode == "in_place" and pipeline.digest != record.get("spec_sha256"):
            notes.append(f"{pipeline.file.name} changed since the original run")
        missing = sorted(set(pinned) - set(pipeline.spec.datasets))
        if missing:
            notes.append(f"dataset(s) {', '.join(missing)} of the original run are not in "
                         "the spec")
        unpinned = sorted(set(pipeline.spec.datasets) - set(pinned))
        if unpinned:
            notes.append(f"dataset(s) {', '.join(unpinned)} were not recorded; used as the "
                         "spec says")
        result = PipelineRunner(pipeline, client, observer=observer).run(RunOptions(
            release=False, write_lock=False, force=True, work_dir=Path(tmp) / "work",
            dataset_versions=pinned, params=params, trigger="reproduce",
            tags={"pipeline.reproduces": f"{name}@{version.version}",
                  "pipeline.original_run": run_id}))
    original = {str(k): float(v) for k, v in (record.get("metrics") or {}).items()} or dict(
        version.metrics)
    comparisons = tuple(_compare(metric, value, result.metrics.get(metric), tolerance)
                        for metric, value in sorted(original.items()))
    if not comparisons:
        notes.append("the original run logged no metrics to compare")
    return ReproduceReport(model=name, version=version.version, original_run_id=run_id,
                           git_commit=commit, mode=mode, tolerance=tolerance,
                           datasets=pinned, comparisons=comparisons, result=result,
                           notes=tuple(notes))


def _compare(metric: str, original: float, reproduced: float | None,
             tolerance: float) -> MetricComparison:
    if reproduced is None:
        return MetricComparison(metric, original, None, None, False)
    diff = reproduced - original
    return MetricComparison(metric, original, reproduced, diff, abs(diff) <= tolerance)


def _spec_file(spec: Path | None, record: Mapping[str, Any], what: str) -> Path:
    if spec is not None:
        file = spec / "modelhost.yaml" if spec.is_dir() else spec
        if not file.is_file():
            raise ReproduceError(what, f"no pipeline spec {file.name!r} at the given path")
        return file.resolve()
    recorded = record.get("spec_path")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    raise ReproduceError(what, f"its pipeline spec ({record.get('spec_file', 'modelhost.yaml')}"
                               ") is no longer where it ran; pass --spec PATH")


@contextmanager
def _checkout(spec_file: Path, commit: str | None, tmp: Path,
              notes: list[str]) -> Iterator[tuple[Pipeline, str]]:
    """The pipeline at ``commit`` in a temporary worktree, or the current one in place."""
    top = git.toplevel(spec_file.parent)
    if commit and top is not None and git.has_commit(top, commit):
        with git.worktree(top, commit, tmp / "checkout") as checkout:
            copy = checkout / spec_file.resolve().relative_to(top)
            if copy.is_file():
                notes.insert(0, f"re-ran commit {commit[:12]} in a temporary git worktree")
                yield load_spec(copy), "worktree"
                return
            notes.insert(0, f"{spec_file.name} is not in commit {commit[:12]}; re-ran the "
                            "current files in place")
    elif not commit:
        notes.insert(0, "no git commit was recorded; re-ran the current files in place")
    elif top is None:
        notes.insert(0, f"the recorded commit {commit[:12]} cannot be checked out (the "
                        "pipeline's folder is not in a git repository); re-ran the current "
                        "files in place")
    else:
        notes.insert(0, f"commit {commit[:12]} is not in this repository; re-ran the current "
                        "files in place")
    yield load_spec(spec_file), "in_place"


__all__ = ["DEFAULT_TOLERANCE", "MetricComparison", "ReproduceReport", "load_record",
           "reproduce"]

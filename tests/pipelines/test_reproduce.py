"""modelhost reproduce: re-run from the recorded lineage and compare the metrics."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import modelhost as mh
from modelhost import Client
from modelhost.pipelines import (
    PipelineRunner,
    ReproduceError,
    RunOptions,
    load_spec,
    reproduce,
)
from tests.pipelines.toy import STEPS, commit_all, git, toy_frame, write_toy

GATES = [{"kind": "threshold", "metric": "accuracy", "min": 0.5}]


def register_toy(folder: Path, client: Client, **spec: Any) -> str:
    pipeline = load_spec(write_toy(folder, register=True, gates=GATES, **spec))
    result = PipelineRunner(pipeline, client).run(RunOptions())
    assert result.ok and result.model_version, result.summary()
    return result.model_version


def test_reproduce_a_commit_in_a_worktree(toy_dir: Path, sqlite_client: Client) -> None:
    toy_dir.mkdir()
    write_toy(toy_dir, register=True, gates=GATES)
    first = commit_all(toy_dir, "first model")
    version = register_toy(toy_dir, sqlite_client)
    mv = sqlite_client.registry.get_version("toy", version)
    assert mv.lineage.git_commit == first
    assert sqlite_client.tracking.get_run(mv.lineage.run_id or "").git_commit == first
    # Later: other code, params and data, committed; the version still reproduces.
    (toy_dir / "steps.py").write_text(STEPS.replace("frame[FEATURES], frame[\"y\"]",
                                                    "frame[FEATURES][:20], frame[\"y\"][:20]"))
    toy_frame(seed=3).to_csv(toy_dir / "data.csv", index=False)
    write_toy(toy_dir, register=True, gates=GATES, train={"C": 0.01})
    commit_all(toy_dir, "second model")
    lock_before = (toy_dir / "modelhost.lock").read_text()

    report = reproduce(sqlite_client, "toy", version)
    assert report.ok, report.to_dict()
    assert report.mode == "worktree" and report.git_commit == first
    assert report.notes[0] == f"re-ran commit {first[:12]} in a temporary git worktree"
    assert report.datasets == {"toy-data": 1}
    assert [(c.metric, c.within, c.diff) for c in report.comparisons] == [
        ("accuracy", True, 0.0), ("holdout_rows", True, 0.0)]
    new_run = sqlite_client.tracking.get_run(report.result.run_id)
    assert new_run.tags["pipeline.reproduces"] == f"toy@{version}"
    assert new_run.tags["pipeline.trigger"] == "reproduce"
    assert new_run.git_commit == first and new_run.datasets == ("toy-data@1",)
    assert new_run.params == {"train.C": "1.0"}
    # Nothing registered, the lock and the working copy untouched, no worktree left.
    assert [v.version for v in sqlite_client.registry.list_versions("toy")] == [version]
    assert (toy_dir / "modelhost.lock").read_text() == lock_before
    assert len(git(toy_dir, "worktree", "list").splitlines()) == 1


def test_reproduce_in_place_reports_a_mismatch(toy_dir: Path, sqlite_client: Client) -> None:
    version = register_toy(toy_dir, sqlite_client)
    (toy_dir / "steps.py").write_text(STEPS.replace(
        'float(model.score(holdout[FEATURES], holdout["y"]))',
        'float(model.score(holdout[FEATURES], holdout["y"])) - 0.05'))
    report = reproduce(sqlite_client, "toy", version)
    assert not report.ok and report.mode == "in_place"
    assert report.notes[0] == "no git commit was recorded; re-ran the current files in place"
    accuracy = next(c for c in report.comparisons if c.metric == "accuracy")
    assert not accuracy.within and accuracy.diff == pytest.approx(-0.05)
    assert accuracy.reproduced == pytest.approx(accuracy.original - 0.05)
    assert reproduce(sqlite_client, "toy", version, tolerance=0.06).ok


def test_versions_that_cannot_be_reproduced(toy_dir: Path, tmp_path: Path,
                                            sqlite_client: Client) -> None:
    from sklearn.linear_model import LogisticRegression

    frame = toy_frame()
    model = LogisticRegression().fit(frame[["a", "b"]], frame["y"])
    sqlite_client.registry.register(model, name="plain", input_example=frame[["a", "b"]][:2])
    with pytest.raises(ReproduceError, match=r"cannot reproduce plain 1\.0\.0: its lineage "
                                             r"records no run"):
        reproduce(sqlite_client, "plain", "1.0.0")
    mh.set_client(sqlite_client)
    try:
        with mh.start_run() as run:
            run.log_model(model, name="plain")
    finally:
        mh.set_client(None)
    with pytest.raises(ReproduceError, match="it was not started by 'modelhost pipeline run'"):
        reproduce(sqlite_client, "plain", "1.0.1")
    version = register_toy(toy_dir, sqlite_client)
    moved = tmp_path / "moved"
    shutil.move(toy_dir, moved)
    with pytest.raises(ReproduceError, match=r"no longer where it ran; pass --spec PATH"):
        reproduce(sqlite_client, "toy", version)
    assert reproduce(sqlite_client, "toy", version, spec=moved).ok

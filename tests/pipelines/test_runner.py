"""Running pipelines: the tracked run, the step cache, resuming, outputs, datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelhost import Client
from modelhost.entities import RunStatus, Stage
from modelhost.errors import ModelNotFoundError
from modelhost.pipelines import (
    Pipeline,
    PipelineResult,
    PipelineRunner,
    PipelineStateError,
    PipelineStatus,
    RunOptions,
    StepLoadError,
    load_spec,
)
from modelhost.pipelines.state import LockFile
from tests.pipelines.toy import STEPS, spec, toy_frame, write_spec, write_toy


def run(pipeline: Pipeline, client: Client, **options: Any) -> PipelineResult:
    return PipelineRunner(pipeline, client).run(RunOptions(**options))


def statuses(result: PipelineResult) -> dict[str, str]:
    return {s.name: s.status.value for s in result.steps}


def test_first_run_tracks_everything_second_run_skips(toy: Pipeline,
                                                      sqlite_client: Client) -> None:
    first = run(toy, sqlite_client)
    assert first.ok, first.summary()
    assert statuses(first) == {"validate": "ran", "prepare": "ran", "train": "ran",
                               "evaluate": "ran"}
    info = sqlite_client.tracking.get_run(first.run_id)
    assert info.status is RunStatus.FINISHED and info.experiment == "toy"
    assert info.params == {"train.C": "1.0"}
    assert set(info.metrics) == {"accuracy", "holdout_rows"}  # ctx.log_metric and mh.log_metric
    assert info.datasets == ("toy-data@1",)
    assert info.tags["pipeline.trigger"] == "manual" and info.tags["pipeline.status"] == \
        "succeeded"
    assert {"pipeline/record.json", "pipeline/modelhost.yaml",
            "pipeline/validation/toy-data.json"} <= set(info.artifacts)
    assert first.metrics == info.metrics

    second = run(toy, sqlite_client)
    assert second.ok and set(statuses(second).values()) == {"skipped"}
    again = sqlite_client.tracking.get_run(second.run_id)
    assert again.metrics == info.metrics  # the skipped steps' metrics are logged again
    assert again.datasets == ("toy-data@1",)
    assert sqlite_client.datasets.versions("toy-data")[-1].version == 1


def test_changes_rerun_the_step_and_what_depends_on_it(toy: Pipeline, toy_dir: Path,
                                                       sqlite_client: Client) -> None:
    assert run(toy, sqlite_client).ok
    changed = load_spec(write_toy(toy_dir, train={"C": 0.5}))
    assert statuses(run(changed, sqlite_client)) == {
        "validate": "skipped", "prepare": "skipped", "train": "ran", "evaluate": "ran"}
    # the code of the steps' module is part of the key
    (toy_dir / "steps.py").write_text(STEPS + "\n# a comment changes the hash\n")
    assert statuses(run(changed, sqlite_client)) == {
        "validate": "skipped", "prepare": "ran", "train": "ran", "evaluate": "ran"}
    # new data: a new dataset version, every step runs again
    toy_frame(seed=1).to_csv(toy_dir / "data.csv", index=False)
    result = run(changed, sqlite_client)
    assert set(statuses(result).values()) == {"ran"}
    assert result.datasets[0]["ref"] == "toy-data@2" and result.datasets[0]["created"]
    # --force runs everything even when nothing changed
    assert set(statuses(run(changed, sqlite_client, force=True)).values()) == {"ran"}


def test_a_failed_step_stops_and_a_rerun_resumes(toy_dir: Path,
                                                 sqlite_client: Client) -> None:
    failing = load_spec(write_toy(toy_dir, train={"fail": True}, gates=[
        {"kind": "threshold", "metric": "accuracy", "min": 0.5}], register=True))
    result = run(failing, sqlite_client)
    assert result.status is PipelineStatus.STEP_FAILED and not result.ok
    assert statuses(result) == {"validate": "ran", "prepare": "ran", "train": "failed",
                                "evaluate": "not run", "gate": "not run",
                                "register": "not run"}
    failed = result.failed_step
    assert failed is not None and failed.error == "ValueError: the learning rate is negative"
    assert failed.traceback is not None and "the learning rate" in failed.traceback
    assert result.summary() == "step 'train' failed: ValueError: the learning rate is negative"
    assert sqlite_client.tracking.get_run(result.run_id).status is RunStatus.FAILED
    assert "train" not in LockFile.load(failing.lock_file).steps

    fixed = load_spec(write_toy(toy_dir, gates=[
        {"kind": "threshold", "metric": "accuracy", "min": 0.5}], register=True))
    resumed = run(fixed, sqlite_client)
    assert resumed.ok
    assert statuses(resumed) == {"validate": "skipped", "prepare": "skipped", "train": "ran",
                                 "evaluate": "ran", "gate": "ran", "register": "ran"}


def test_tampered_or_missing_outputs_rerun_the_step(toy: Pipeline,
                                                    sqlite_client: Client) -> None:
    assert run(toy, sqlite_client).ok
    model_file = toy.work_dir / "outputs" / "train" / "model.pkl"
    model_file.write_bytes(model_file.read_bytes() + b"x")
    assert statuses(run(toy, sqlite_client))["train"] == "ran"
    (toy.work_dir / "outputs" / "prepare" / "holdout.pkl").unlink()
    assert statuses(run(toy, sqlite_client))["prepare"] == "ran"


def test_lock_file_is_plain_yaml_and_refused_when_broken(toy: Pipeline,
                                                         sqlite_client: Client) -> None:
    assert run(toy, sqlite_client).ok
    text = toy.lock_file.read_text()
    assert toy.lock_file.name == "modelhost.lock" and "schema: 1" in text
    assert str(toy.folder) not in text  # relative paths only
    assert not list(toy.folder.glob(".modelhost.lock.*"))  # no temporary file left
    toy.lock_file.write_text("schema: 99\n")
    with pytest.raises(PipelineStateError, match="delete it to rebuild"):
        run(toy, sqlite_client)


@pytest.mark.parametrize(("steps_source", "message"), [
    ("def prepare(ctx):\n    return {'train': 1}\n", "did not return its declared output"),
    ("def prepare(ctx):\n    return {'train': 1, 'holdout': 2, 'x': 3}\n",
     "returned undeclared output(s) x"),
    ("def prepare(ctx):\n    return [1, 2]\n", "must return a dict of its outputs"),
    ("import threading\ndef prepare(ctx):\n    return {'train': threading.Lock(), "
     "'holdout': 1}\n", "cannot be saved: TypeError"),
])
def test_outputs_must_match_the_declaration(toy_dir: Path, sqlite_client: Client,
                                            steps_source: str, message: str) -> None:
    pipeline = load_spec(write_toy(toy_dir, schema=False))
    (toy_dir / "steps.py").write_text(steps_source + "def train(ctx): pass\n"
                                      "def evaluate(ctx): pass\n")
    result = run(pipeline, sqlite_client)
    assert statuses(result)["prepare"] == "failed"
    assert result.failed_step is not None and message in (result.failed_step.error or "")


@pytest.mark.parametrize(("steps_source", "message"), [
    (None, "no module 'steps'; put steps.py next to modelhost.yaml"),
    ("x = 1\n", "module 'steps' has no 'prepare'"),
    ("prepare = 3\ntrain = evaluate = print\n", "'prepare' is not a function"),
    ("raise KeyError('boom')\n", "importing 'steps' raised KeyError: 'boom'"),
])
def test_step_functions_that_do_not_load(toy_dir: Path, sqlite_client: Client,
                                         steps_source: str | None, message: str) -> None:
    pipeline = load_spec(write_toy(toy_dir))
    if steps_source is None:
        (toy_dir / "steps.py").unlink()
    else:
        (toy_dir / "steps.py").write_text(steps_source)
    with pytest.raises(StepLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(pipeline, sqlite_client)
    assert sqlite_client.tracking.list_runs() == []  # nothing started


def test_register_and_deploy_promote_with_full_lineage(toy_dir: Path,
                                                       sqlite_client: Client) -> None:
    pipeline = load_spec(write_toy(toy_dir, register=True, deploy=True, gates=[
        {"kind": "threshold", "metric": "accuracy", "min": 0.5}]))
    result = run(pipeline, sqlite_client)
    assert result.ok and result.registered and result.model_version == "1.0.0"
    assert result.deployed is not None and result.deployed["strategy"] == "direct"
    mv = sqlite_client.registry.get_version("toy", "1.0.0")
    assert mv.stage is Stage.PRODUCTION
    assert sqlite_client.registry.get_model("toy").production_version == "1.0.0"
    assert mv.lineage.run_id == result.run_id
    assert mv.lineage.dataset_versions == ("toy-data@1",)
    assert mv.metrics["accuracy"] == result.metrics["accuracy"]
    assert mv.params["train.C"] == "1.0" and mv.tags["pipeline"] == "toy"
    assert mv.input_example is not None and len(mv.input_example) == 3
    history = sqlite_client.registry.stage_history("toy")
    assert [h.to_stage for h in history] == [Stage.STAGING, Stage.PRODUCTION]
    assert history[-1].reason.startswith(f"pipeline toy, run {result.run_id[:8]}")

    again = run(pipeline, sqlite_client)
    assert again.ok and not again.registered and again.model_version == "1.0.0"
    assert [v.version for v in sqlite_client.registry.list_versions("toy")] == ["1.0.0"]
    assert again.summary() == "toy 1.0.0 is in production"


def test_a_failed_gate_registers_and_deploys_nothing(toy_dir: Path,
                                                     sqlite_client: Client) -> None:
    pipeline = load_spec(write_toy(toy_dir, register=True, deploy=True, gates=[
        {"kind": "threshold", "metric": "accuracy", "min": 0.99},
        {"kind": "threshold", "metric": "accuracy", "min": 0.1}]))
    result = run(pipeline, sqlite_client)
    assert result.status is PipelineStatus.GATE_FAILED
    assert statuses(result)["register"] == "not run" and statuses(result)["deploy"] == \
        "not run"
    failed = result.failed_gates
    assert len(failed) == 1 and failed[0].threshold == 0.99
    accuracy = result.metrics["accuracy"]
    assert failed[0].margin == pytest.approx(accuracy - 0.99)
    assert f"is below the minimum 0.99 by {0.99 - accuracy:.4g}" in failed[0].message
    assert result.summary() == "1 of 2 gates failed; nothing was registered or deployed"
    with pytest.raises(ModelNotFoundError):
        sqlite_client.registry.get_model("toy")
    assert "gate" not in LockFile.load(pipeline.lock_file).steps


def test_validation_failure_stops_before_the_steps(toy_dir: Path,
                                                   sqlite_client: Client) -> None:
    frame = toy_frame()
    frame.loc[[3, 7], "g"] = "mars"
    frame.loc[5, "y"] = 7
    toy_dir.mkdir(parents=True)
    frame.to_csv(toy_dir / "data.csv", index=False)
    pipeline = load_spec(write_toy(toy_dir, register=True))
    result = run(pipeline, sqlite_client)
    assert result.status is PipelineStatus.VALIDATION_FAILED
    assert statuses(result) == {"validate": "failed", "prepare": "not run", "train": "not run",
                                "evaluate": "not run", "register": "not run"}
    report = result.validation[0]
    assert not report.ok and report.ref == "toy-data@1"
    assert "column 'g': isin failed for 2 rows" in report.summary
    assert "row 3: 'mars'" in report.summary and "column 'y'" in report.summary
    assert result.summary() == "data validation failed for toy-data@1; nothing was registered"
    record = json.loads(json.dumps(result.to_dict()))
    assert record["validation"][0]["report"]["failures"]


def test_reason_is_recorded_and_picks_the_newest_dataset(toy_dir: Path, tmp_path: Path,
                                                         sqlite_client: Client) -> None:
    for seed in (0, 1):
        toy_frame(seed=seed).to_csv(tmp_path / f"v{seed}.csv", index=False)
        sqlite_client.datasets.add(tmp_path / f"v{seed}.csv", name="toy-data")
    pinned = load_spec(write_toy(toy_dir, dataset={"version": 1}))
    assert run(pinned, sqlite_client).datasets[0]["ref"] == "toy-data@1"
    result = run(pinned, sqlite_client, reason="drift alert on toy")
    assert result.ok and result.datasets[0]["ref"] == "toy-data@2"
    assert result.trigger == "retrain" and result.reason == "drift alert on toy"
    tags = sqlite_client.tracking.get_run(result.run_id).tags
    assert tags["pipeline.reason"] == "drift alert on toy" and tags["pipeline.trigger"] == \
        "retrain"
    assert sqlite_client.tracking.get_run(result.run_id).datasets == ("toy-data@2",)
    # With a local file, the file is versioned first; a newer version still wins.
    toy_frame(seed=5).to_csv(tmp_path / "v5.csv", index=False)
    sqlite_client.datasets.add(tmp_path / "v5.csv", name="toy-data")  # @3
    with_path = load_spec(write_toy(toy_dir))  # data.csv: same content as @1
    assert run(with_path, sqlite_client).datasets[0]["ref"] == "toy-data@1"
    newest = run(with_path, sqlite_client, reason="retrain")
    assert newest.datasets[0]["ref"] == "toy-data@3" and newest.datasets[0]["source"] == \
        "store"


def test_missing_dataset_is_a_clear_error(toy_dir: Path, sqlite_client: Client) -> None:
    from modelhost.errors import InvalidInputError

    pipeline = load_spec(write_toy(toy_dir, dataset={"version": "latest"}))
    with pytest.raises(InvalidInputError, match="dataset 'toy-data': the dataset store has "
                                                "no versions yet"):
        run(pipeline, sqlite_client)
    (run_,) = sqlite_client.tracking.list_runs()
    assert run_.status is RunStatus.FAILED
    with_path = load_spec(write_toy(toy_dir, schema=False))
    (toy_dir / "data.csv").unlink()
    with pytest.raises(InvalidInputError, match=r"no file or folder 'data\.csv'"):
        run(with_path, sqlite_client)


def test_steps_may_return_files_from_their_output_dir(toy_dir: Path,
                                                      sqlite_client: Client) -> None:
    pipeline = load_spec(write_toy(toy_dir, schema=False))
    (toy_dir / "steps.py").write_text(
        "def prepare(ctx):\n"
        "    out = ctx.output_dir / 'report.txt'\n"
        "    out.write_text(str(len(ctx.dataframe('data'))))\n"
        "    return {'train': out, 'holdout': ctx.pipeline_dir / 'data.csv'}\n"
        "def train(ctx): pass\ndef evaluate(ctx): pass\n")
    result = run(pipeline, sqlite_client)
    assert result.failed_step is not None
    assert "is a path that is not inside the step's output folder" in (
        result.failed_step.error or "")
    text = (toy_dir / "steps.py").read_text().replace(
        "ctx.pipeline_dir / 'data.csv'", "out")
    (toy_dir / "steps.py").write_text(text.replace(
        "def train(ctx): pass",
        "def train(ctx):\n    assert ctx.inputs['train'].read_text() == '200'\n"
        "    return {'model': 1, 'example': 2}"))
    assert statuses(run(pipeline, sqlite_client)) == {"prepare": "ran", "train": "ran",
                                                      "evaluate": "ran"}


def test_a_broken_schema_fails_the_validate_step(toy_dir: Path,
                                                 sqlite_client: Client) -> None:
    pipeline = load_spec(write_toy(toy_dir))
    (toy_dir / "schema.yaml").write_text("version: 1\ncolumns: {a: {type: decimal}}\n")
    result = run(pipeline, sqlite_client)
    assert result.status is PipelineStatus.VALIDATION_FAILED
    assert result.summary().startswith("data validation could not run: ")
    assert "decimal" in result.summary()


def test_a_deploy_step_starts_a_rollout_with_its_options(toy_dir: Path,
                                                         sqlite_client: Client) -> None:
    first = run(load_spec(write_toy(toy_dir, register=True, deploy=True)), sqlite_client)
    assert first.ok and first.model_version == "1.0.0"
    body = spec(register=True, train={"C": 0.5})
    body["deploy"] = {"strategy": "canary", "options": {"steps": [20, 100]}}
    canary = load_spec(write_spec(toy_dir, body))
    result = run(canary, sqlite_client)
    assert result.ok and result.model_version == "1.0.1", result.summary()
    assert result.deployed is not None and result.deployed["strategy"] == "canary"
    assert result.deployed["deployment"]["weights"] == {"1.0.0": 0.8, "1.0.1": 0.2}
    assert result.deployed["changes"] == []  # production moves on promotion, not before
    d = sqlite_client.rollouts.status("toy")
    assert (d.state.value, d.candidate, d.stable) == ("progressing", "1.0.1", "1.0.0")
    event = sqlite_client.rollouts.events("toy")[-1]
    assert event.kind == "deploy" and event.to_version == "1.0.1"

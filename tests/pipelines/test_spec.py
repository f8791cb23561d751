"""modelhost.yaml: what a valid spec gives, and errors that name the offending key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelhost.errors import FileNotFoundInputError
from modelhost.pipelines import Pipeline, PipelineSpecError, load_spec, parse_spec
from modelhost.pipelines.spec import parse_ref
from tests.pipelines.toy import spec, write_toy


def parse(body: dict[str, Any] | str, folder: Path) -> Pipeline:
    text = body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False)
    return parse_spec(text, file=folder / "modelhost.yaml")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "schema.yaml").write_text("version: 1\ncolumns: {a: {type: double}}\n")
    return tmp_path


def test_a_valid_spec_orders_the_steps(tmp_path: Path) -> None:
    pipeline = load_spec(write_toy(tmp_path, gates=[
        {"kind": "threshold", "metric": "accuracy", "min": 0.5},
        {"kind": "latency", "p99_ms": 20},
        {"kind": "not_worse_than_production", "metric": "auc", "tolerance": 0.01},
        {"kind": "fairness", "group": "g", "max_gap": 0.1},
        {"kind": "data_validation"}], register=True, deploy=True))
    assert pipeline.step_names() == ["validate", "prepare", "train", "evaluate", "gate",
                                     "register", "deploy"]
    assert pipeline.step_names(release=False) == ["validate", "prepare", "train", "evaluate"]
    assert pipeline.spec.gate_titles() == [
        "accuracy >= 0.5", "latency p99 <= 20 ms", "auc not worse than production",
        "accuracy gap across 'g' <= 0.1", "data validation passed"]
    assert pipeline.lock_file == tmp_path.resolve() / "modelhost.lock"
    assert pipeline.spec.experiment_name == "toy"
    assert load_spec(tmp_path).file == pipeline.file  # a folder means its modelhost.yaml
    assert parse_ref("datasets.toy-data").is_dataset
    assert parse(spec(deploy=True, register=True), tmp_path).spec.deploy.strategy == "direct"


def test_deploy_shorthands(folder: Path) -> None:
    assert parse({**spec(register=True), "deploy": "direct"}, folder).spec.deploy.strategy \
        == "direct"
    assert parse({**spec(register=True), "deploy": True}, folder).spec.deploy.strategy == \
        "direct"
    assert parse({**spec(), "deploy": False}, folder).spec.deploy is None


def with_step(**changes: Any) -> dict[str, Any]:
    body = spec()
    body["steps"]["train"].update(changes)
    return body


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(("body", "message"), [
    (with_step(paramz={}),
     "steps.train.paramz: unknown key (did you mean 'params'?); allowed: call, deps, "
     "inputs, outputs, params"),
    ({**spec(), "stepz": {}}, "stepz: unknown key (did you mean 'steps'?); allowed: datasets, "
                              "deploy, description, experiment, gates, model, name, register, "
                              "steps, work_dir"),
    (without(spec(), "name"), "name: this key is required"),
    ({**spec(), "name": "Bad Name"}, "name: invalid pipeline name 'Bad Name'"),
    (with_step(call="steps.train"), "steps.train.call: 'steps.train' must look like "
                                    "'module:function'"),
    (with_step(inputs={"train": "evaluate.model"}),
     "steps.train.inputs.train: 'evaluate.model' refers to no earlier step (it runs later"),
    (with_step(inputs={"train": "prepare.nope"}),
     "steps.train.inputs.train: step 'prepare' declares no output 'nope'; its outputs: "
     "holdout, train"),
    (with_step(inputs={"train": "datasets.other"}),
     "steps.train.inputs.train: unknown dataset 'other'; declared: toy-data"),
    (with_step(inputs={"train": "nodot"}), "must look like 'datasets.NAME' or 'STEP.OUTPUT'"),
    (with_step(outputs=["model", "model"]), "steps.train.outputs: output names must be unique"),
    (with_step(params={"when": "2024-01-01"}), None),
    (with_step(deps=["../secret.py"]), "steps.train.deps: dependency '../secret.py' must be "
                                       "a path relative to the spec's folder"),
    ({**spec(), "steps": {"gate": {"call": "m:f"}}}, "steps.gate: 'gate' is a built-in step"),
    ({**spec(), "steps": {}}, "steps: a pipeline needs at least one step"),
    ({**spec(), "gates": [{"metric": "auc", "min": 1}]},
     "gates.0: a gate needs 'kind': one of threshold, not_worse_than_production, latency, "
     "data_validation, fairness"),
    ({**spec(), "gates": [{"kind": "speed"}]}, "gates.0: a gate needs 'kind'"),
    ({**spec(), "gates": [{"kind": "threshold", "metric": "auc", "mn": 1}]},
     "gates.0.mn: unknown key (did you mean 'min'?); allowed: kind, max, metric, min, "
     "name"),
    ({**spec(), "gates": [{"kind": "threshold", "metric": "auc"}]},
     "gates.0: a threshold gate needs 'min', 'max' or both"),
    ({**spec(), "gates": [{"kind": "latency", "p99_ms": 0}]}, "gates.0.p99_ms: Input should "
                                                               "be greater than 0"),
    ({**spec(), "gates": [{"kind": "not_worse_than_production", "metric": "speed"}]},
     "gates.0.metric: unknown metric 'speed'; known: accuracy"),
    ({**spec(), "gates": [{"kind": "data_validation", "datasets": ["nope"]}]},
     "gates.0.datasets: unknown dataset 'nope'"),
    ({**without(spec(), "model"), "gates": [{"kind": "latency", "p99_ms": 5}]},
     "gates: a latency gate needs a 'model' section"),
    ({**spec(), "model": {"name": "toy", "output": "train.model"},
      "gates": [{"kind": "fairness", "group": "g", "max_gap": 0.1}]},
     "gates.0: a fairness gate needs 'model.holdout'"),
    ({**spec(), "model": {"name": "toy", "output": "train.weights"}},
     "model.output: 'train.weights' is not a declared step output"),
    ({**without(spec(), "model"), "register": True},
     "register: registering needs a 'model' section"),
    ({**spec(), "deploy": {"strategy": "direct"}}, "deploy: deploying needs a 'register' "
                                                   "section"),
    ({**spec(register=True), "deploy": {"strategy": "canary", "options": {"split": 0.5}}},
     "deploy: unknown option 'split' for canary"),
    ({**spec(register=True), "deploy": {"strategy": "blue-green",
                                        "options": {"keep_previous_s": "soon"}}},
     "deploy: option 'keep_previous_s' must be a duration"),
    ({**spec(register=True), "deploy": {"strategy": "yolo"}},
     "deploy: unknown deploy strategy 'yolo'; available: ab, blue_green, canary, direct, "
     "shadow"),
    ({**spec(register=True), "deploy": {"strategy": "direct", "options": {"weight": 5}}},
     "deploy: deploy strategy 'direct' takes no options; got weight"),
    ({**spec(), "datasets": {"toy-data": {"path": "a.csv", "version": 2}}},
     "datasets.toy-data: give either 'path'"),
    ({**spec(), "datasets": {"toy-data": {"version": 0}}},
     "datasets.toy-data.version: a dataset version is a number >= 1 or 'latest'"),
    ({**spec(), "datasets": {"toy-data": {"path": "/etc/passwd"}}},
     "datasets.toy-data.path: path '/etc/passwd' must be a path relative"),
    ({**spec(), "work_dir": "../out"}, "work_dir: work_dir '../out' must be a path relative"),
    ("name: toy\nsteps: [\n", "not valid YAML at line 3, column 1"),
    ("- just\n- a list\n", "the file must be a YAML mapping"),
])
def test_spec_errors_name_the_key(body: dict[str, Any] | str, message: str | None,
                                  folder: Path) -> None:
    if message is None:  # a quoted date is fine
        assert parse(body, folder).spec.steps["train"].params["when"] == "2024-01-01"
        return
    with pytest.raises(PipelineSpecError) as caught:
        parse(body, folder)
    assert caught.value.message.startswith("modelhost.yaml: ")
    assert message in caught.value.message
    assert str(folder) not in caught.value.message  # no machine paths


def test_unquoted_dates_and_all_problems_are_reported(folder: Path) -> None:
    body = "name: toy\nsteps:\n  a: {call: 'm:f', params: {d: 2024-01-01}, outputz: []}\n"
    with pytest.raises(PipelineSpecError) as caught:
        parse(body, folder)
    assert "steps.a.params: param 'd' must be a string, number, boolean, list or mapping; " \
           "got date (quote dates" in caught.value.message
    assert [d["message"] for d in caught.value.details][1].startswith("steps.a.outputz")
    assert "; steps.a.outputz: unknown key (did you mean 'outputs'?)" in caught.value.message


def test_a_misspelt_key_lists_every_problem_with_a_suggestion(folder: Path) -> None:
    with pytest.raises(PipelineSpecError) as caught:
        parse("name: toy\nstepz:\n  a: {call: 'm:f'}\n", folder)
    assert caught.value.message.startswith(
        "modelhost.yaml: steps: this key is required; stepz: unknown key (did you mean "
        "'steps'?); allowed: datasets, deploy, ")
    assert "more problem" not in caught.value.message


def test_files_the_spec_names_must_exist(tmp_path: Path) -> None:
    write_toy(tmp_path)
    (tmp_path / "schema.yaml").unlink()
    with pytest.raises(PipelineSpecError, match=r"datasets\.toy-data\.schema: no file "
                                                r"'schema\.yaml' next to modelhost\.yaml"):
        load_spec(tmp_path / "modelhost.yaml")
    body = spec(schema=False)
    body["steps"]["train"]["deps"] = ["helpers.py"]
    with pytest.raises(PipelineSpecError, match=r"steps\.train\.deps: no file or folder "
                                                r"'helpers\.py'"):
        parse(body, tmp_path)
    with pytest.raises(FileNotFoundInputError):
        load_spec(tmp_path / "missing.yaml")

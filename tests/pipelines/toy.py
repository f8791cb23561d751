"""A tiny pipeline written into a temporary folder: a toy dataset, three steps, and a
spec built from keyword arguments so each test states only what it changes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.datasets import make_classification

STEPS = '''\
"""Steps of the toy pipeline."""
import modelhost as mh
from sklearn.linear_model import LogisticRegression

FEATURES = ["a", "b"]


def prepare(ctx):
    data = ctx.dataframe("data")
    if ctx.params.get("fail"):
        raise RuntimeError("prepare failed on purpose")
    cut = int(len(data) * 0.7)
    return {"train": data.iloc[:cut], "holdout": data.iloc[cut:].reset_index(drop=True)}


def train(ctx):
    if ctx.params.get("fail"):
        raise ValueError("the learning rate is negative")
    frame = ctx.inputs["train"]
    model = LogisticRegression(C=ctx.params["C"]).fit(frame[FEATURES], frame["y"])
    return {"model": model, "example": frame[FEATURES].head(3)}


def evaluate(ctx):
    model, holdout = ctx.inputs["model"], ctx.inputs["holdout"]
    ctx.log_metric("accuracy", float(model.score(holdout[FEATURES], holdout["y"])))
    mh.log_metric("holdout_rows", len(holdout))
'''

SCHEMA = """\
version: 1
min_rows: 10
columns:
  a: {type: double}
  b: {type: double}
  g: {type: string, allowed: [x, z]}
  y: {type: long, allowed: [0, 1]}
"""


def toy_frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    X, y = make_classification(n_samples=rows, n_features=2, n_informative=2, n_redundant=0,
                                random_state=seed)
    return pd.DataFrame({"a": X[:, 0].round(4), "b": X[:, 1].round(4),
                         "g": ["x" if i % 2 else "z" for i in range(rows)], "y": y})


def spec(*, name: str = "toy", gates: list[dict[str, Any]] | None = None,
         register: bool = False, deploy: bool = False, schema: bool = True,
         dataset: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
         prepare: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    data = dataset if dataset is not None else {"path": "data.csv"}
    if schema:
        data = {**data, "schema": "schema.yaml"}
    body: dict[str, Any] = {
        "name": name,
        "datasets": {"toy-data": data},
        "steps": {
            "prepare": {"call": "steps:prepare", "inputs": {"data": "datasets.toy-data"},
                        "params": prepare or {}, "outputs": ["train", "holdout"]},
            "train": {"call": "steps:train", "inputs": {"train": "prepare.train"},
                      "params": {"C": 1.0, **(train or {})}, "outputs": ["model", "example"]},
            "evaluate": {"call": "steps:evaluate",
                         "inputs": {"model": "train.model", "holdout": "prepare.holdout"}},
        },
        "model": {"name": name, "output": "train.model", "input_example": "train.example",
                  "holdout": "prepare.holdout", "target": "y"},
        **extra,
    }
    if gates:
        body["gates"] = gates
    if register:
        body["register"] = True
    if deploy:
        body["deploy"] = {"strategy": "direct"}
    return body


def write_toy(folder: Path, **kwargs: Any) -> Path:
    """Write the toy pipeline into ``folder``; returns its modelhost.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "steps.py").write_text(STEPS, encoding="utf-8")
    (folder / "schema.yaml").write_text(SCHEMA, encoding="utf-8")
    if not (folder / "data.csv").exists():
        toy_frame().to_csv(folder / "data.csv", index=False)
    return write_spec(folder, spec(**kwargs))


def write_spec(folder: Path, body: dict[str, Any]) -> Path:
    path = folder / "modelhost.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t",
                           "-c", "init.defaultBranch=main", *args], cwd=folder, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def commit_all(folder: Path, message: str) -> str:
    if not (folder / ".git").exists():
        git(folder, "init", "-q")
        (folder / ".gitignore").write_text(".modelhost-pipeline/\nmodelhost.lock\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", message)
    return git(folder, "rev-parse", "HEAD")

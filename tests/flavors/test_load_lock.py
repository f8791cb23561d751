"""First imports happen one thread at a time: loading models of several flavors from many
threads at once, in a fresh interpreter where scikit-learn, skops and onnxruntime are not
imported yet, never runs two module imports at the same time, and every load succeeds.

The child process traces every module it executes (and slows each one down a little, so
that two threads importing at once would certainly overlap) and reports whether a thread
started executing a module while another thread was still executing one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow.sklearn
import pandas as pd
import pytest
import skops.io
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from modelhost.flavors import get_flavor
from modelhost.flavors.onnx import convert_sklearn

ROOT = Path(__file__).resolve().parents[2]
# MLflow (not modelhost) warns while it saves the MLflow folder.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Any type hint is inferred as AnyType:UserWarning",
    "ignore:Operation with range is deprecated:pandas.errors.Pandas4Warning")
THREADS_PER_MODEL = 3

_CHILD = r"""
import importlib.abc, json, sys, threading, time

active = {}  # thread id -> how many modules it is executing (nested imports)
overlaps = []
guard = threading.Lock()


class Traced(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.inner
        me = threading.get_ident()
        with guard:
            if any(depth for thread, depth in active.items() if thread != me):
                overlaps.append(module.__name__)
            active[me] = active.get(me, 0) + 1
        try:
            time.sleep(0.002)
            self.inner.exec_module(module)
        finally:
            with guard:
                active[me] -= 1


class Tracer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = Traced(spec.loader)
        return spec


sys.meta_path.insert(0, Tracer())
from pathlib import Path

from modelhost.flavors import get_flavor

assert not {"sklearn", "skops", "onnxruntime", "pandas"} & set(sys.modules)
jobs = json.loads(sys.argv[1])
barrier = threading.Barrier(len(jobs))
results = [None] * len(jobs)


def load(i, flavor, folder, meta):
    barrier.wait()
    try:
        model = get_flavor(flavor).load(Path(folder), meta)
        results[i] = type(model).__name__
    except BaseException as exc:
        results[i] = f"{type(exc).__name__}: {exc}"


threads = [threading.Thread(target=load, args=(i, *job)) for i, job in enumerate(jobs)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"results": results, "overlaps": overlaps[:20]}))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, iris_logistic: Pipeline,
          forest: RandomForestClassifier,
          iris: tuple[pd.DataFrame, pd.Series]) -> list[tuple[str, str, dict[str, object]]]:
    """(flavor, folder, meta) of a model of each flavor, as the registry stores them."""
    X, _ = iris
    work = tmp_path_factory.mktemp("load-lock")
    skops.io.dump(forest, work / "forest.skops")
    mlflow.sklearn.save_model(iris_logistic, work / "mlflow-src", serialization_format="skops",
                              pip_requirements=["scikit-learn", "skops"])
    plans = [
        ("sklearn", lambda f, d: f.save(iris_logistic, d)),
        ("sklearn", lambda f, d: f.import_path(work / "forest.skops", d, trust_pickle=True)),
        ("onnx", lambda f, d: f.save(convert_sklearn(iris_logistic, X), d)),
        ("mlflow", lambda f, d: f.import_path(work / "mlflow-src", d)),
        ("python", lambda f, d: f.save("tests.serving.startup_models:ConstantModel", d)),
    ]
    models = []
    for i, (flavor, write) in enumerate(plans):
        dest = work / f"model-{i}"
        meta = write(get_flavor(flavor), dest).meta
        models.append((flavor, str(dest), meta))
    return models


def test_concurrent_first_loads_import_one_thread_at_a_time(
        saved: list[tuple[str, str, dict[str, object]]], tmp_path: Path) -> None:
    jobs = [model for model in saved for _ in range(THREADS_PER_MODEL)]
    for i, (_, folder, _) in enumerate(jobs):  # each thread reads its own copy
        shutil.copytree(folder, tmp_path / str(i))
    jobs = [(flavor, str(tmp_path / str(i)), meta) for i, (flavor, _, meta) in enumerate(jobs)]
    child = subprocess.run([sys.executable, "-W", "error", "-c", _CHILD, json.dumps(jobs)],
                           capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-4000:]
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["results"] == [
        "OnnxModel" if flavor == "onnx" else "ObjectModel" for flavor, _, _ in jobs
    ], report
    assert report["overlaps"] == [], (
        f"modules imported by two threads at once: {report['overlaps']}")

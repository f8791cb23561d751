"""The container image: `deploy/Dockerfile` linted with hadolint, and its install steps
run here (no image registry is reachable to build it): the wheels built as its first
stage builds them, installed as its second stage installs them (from those wheels
only) into a clean virtualenv, then `modelhost serve` from it predicts and stops
cleanly on SIGTERM."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.server import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
EXTRAS = "postgres,s3,redis,encryption"


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_keeps_its_promises() -> None:
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2, "a build stage and a runtime stage"
    runtime = stages[-1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M), "a non-root user"
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert re.search(r'^ENTRYPOINT \["modelhost", "serve"', runtime, re.M)
    for compiler in ("gcc", "build-essential", "apt-get install"):
        assert compiler not in runtime, f"{compiler} in the runtime stage"
    assert "--no-index" in runtime, "the runtime installs the build stage's wheels only"
    assert f"[{EXTRAS}]" in stages[0] and "--requirement /wheels/requirements.txt" in runtime


def test_the_image_install_steps_give_a_server_that_predicts(tmp_path: Path) -> None:
    # Stage 1, as the Dockerfile runs it: the project's files, every wheel.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-cache-dir", "--wheel-dir",
          str(wheels), "-c", "constraints.txt", f".[{EXTRAS}]"], cwd=source)
    (built,) = wheels.glob("modelhost-*.whl")
    (wheels / "requirements.txt").write_text(f"modelhost[{EXTRAS}] @ file://{built}\n")

    # Stage 2: a clean environment, from those wheels only.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir", "--no-index",
          "--find-links", str(wheels), "--requirement", str(wheels / "requirements.txt")])

    home = tmp_path / "home"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "MODELHOST_HOME": str(home),
           "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    _run([str(venv / "bin" / "python"), "-c", (
        "import modelhost as mh\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "c = mh.Client()\n"
        "c.registry.register(LogisticRegression(max_iter=500).fit(X, y), name='iris',"
        " input_example=X.head(3))\n"
        "c.transition_stage('iris', '1.0.0', 'staging')\n"
        "c.transition_stage('iris', '1.0.0', 'production')\n")], env=env)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([str(venv / "bin" / "modelhost"), "serve", "--port", str(port),
                               "--workers", "2"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.3)
        answer = httpx.post(f"{url}/v1/models/iris/predict", timeout=10, json={"inputs": [
            {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4,
             "petal width (cm)": 0.2}]})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["version"], answer.json()["predictions"]) == ("1.0.0", [0])
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]


def _run(command: list[str], **kwargs: object) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False,
                          **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])

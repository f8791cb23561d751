"""The CLI's ``--server URL`` (or ``MODELHOST_SERVER``): the management commands run
against a real ``modelhost serve`` with auth required, and give the same output and
exit codes as the same commands on a local store (PRODUCT.md §2, §3.9).

The same script of commands runs twice: on a fresh local home, and through the server
(whose home starts empty too). Their ``--json`` answers are compared with the times
left out; the exit codes of the errors must match as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io
from tests.fixtures_models import iris, iris_example, iris_model
from tests.serving.server import ServerProcess, free_port, server_env

from modelhost import Client, Settings
from modelhost.cli import run
from modelhost.errors import ModelLoadError

pytestmark = pytest.mark.slow

# Times, random ids and who acted (the local user, or the server's key) differ by nature.
_TIMES = frozenset({"created_at", "updated_at", "at", "started_at", "finished_at",
                    "rollout_id", "actor"})


def _timeless(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _timeless(v) for k, v in data.items() if k not in _TIMES}
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("remote-cli-files")
    skops.io.dump(iris_model(), root / "iris.skops")
    skops.io.dump(iris_model(C=0.5), root / "iris-c05.skops")
    (root / "example.json").write_text(iris_example().to_json(orient="records"))
    X, _ = iris()
    data = X.head(40).copy()
    data.loc[3, "petal_width"] = float("nan")  # refused: the signature allows no nulls
    data.to_csv(root / "rows.csv", index=False)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess,
                                                                      dict[str, str]]]:
    home = tmp_path_factory.mktemp("remote-cli-server") / "home"
    with Client(Settings(home=home)) as client:
        keys = {role: client.keys.create(name=f"{role} key", role=role).secret
                for role in ("admin", "deployer", "predictor", "viewer")}
    logs = home.parent / "logs"
    logs.mkdir()
    process = ServerProcess(args=[], log_dir=logs, env=server_env(
        home, MODELHOST_AUTH="required", MODELHOST_ROLLOUTS="false"))
    process.start()
    try:
        yield process, keys
    finally:
        if process.running:
            assert process.terminate() == 0, process.output()


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON values differ, for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys())
                for d in _differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _local(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("MODELHOST_HOME", str(home))
    for var in ("MODELHOST_SERVER", "MODELHOST_API_KEY", "MODELHOST_DB_URL",
                "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)


def _remote(monkeypatch: pytest.MonkeyPatch, tmp: Path, url: str, key: str | None) -> None:
    # A local home that must stay untouched: the commands go to the server.
    monkeypatch.setenv("MODELHOST_HOME", str(tmp / "unused-home"))
    monkeypatch.setenv("MODELHOST_SERVER", url)
    if key is None:
        monkeypatch.delenv("MODELHOST_API_KEY", raising=False)
    else:
        monkeypatch.setenv("MODELHOST_API_KEY", key)


def _script(files: Path) -> list[tuple[list[object], int]]:
    """Commands and their exit codes: registry, stages, aliases, a rollout, errors."""
    return [
        (["register", files / "iris.skops", "--name", "iris", "--input-example",
          files / "example.json", "--json"], 0),
        (["register", files / "iris-c05.skops", "--name", "iris", "--description",
          "weaker regularisation", "--input-example", files / "example.json", "--json"],
         0),
        (["models", "list", "--json"], 0),
        (["models", "show", "iris", "--json"], 0),
        (["models", "versions", "iris", "--json"], 0),
        (["stage", "iris", "1.0.0", "staging", "--json"], 0),
        (["stage", "iris", "1.0.0", "production", "--reason", "first", "--json"], 0),
        (["alias", "set", "iris", "champion", "1.0.1", "--json"], 0),
        (["alias", "set", "iris", "challenger", "1.0.0", "--json"], 0),
        (["alias", "delete", "iris", "challenger", "--json"], 0),
        (["deprecate", "iris", "1.0.0", "--sunset", "2099-01-01", "--json"], 0),
        (["deploy", "iris", "champion", "--strategy", "blue-green", "--json"], 0),
        (["rollout", "status", "iris", "--json"], 0),
        (["rollback", "iris", "--reason", "checking", "--json"], 0),
        (["rollout", "events", "iris", "--json"], 0),
        (["models", "show", "ghost"], 3),
        (["stage", "iris", "9.9.9", "production"], 3),
        (["alias", "delete", "iris", "nobody"], 3),
        (["deploy", "iris", "1.0.0", "--strategy", "blue-green"], 4),
        (["rollout", "promote", "iris"], 4),
        (["stage", "iris", "1.0.1", "sideways"], 1),
        (["deploy", "iris", "1.0.1", "--strategy", "canary", "--steps", "50,x"], 1),
        (["deploy", "iris", "1.0.1", "--strategy", "canary", "--split", "0.3"], 1),
        (["deprecate", "iris", "1.0.1", "--sunset", "2001-01-01"], 1),
        (["register", files / "missing.skops", "--name", "iris"], 3),
    ]


def test_the_same_commands_give_the_same_answers_here_and_on_a_server(
        server: tuple[ServerProcess, dict[str, str]], files: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    process, keys = server
    answers: dict[str, list[tuple[int, Any, str]]] = {"local": [], "remote": []}
    for where in ("local", "remote"):
        if where == "local":
            _local(monkeypatch, tmp_path / "local-home")
        else:
            _remote(monkeypatch, tmp_path, process.base_url, keys["admin"])
        for args, expected in _script(files):
            code, out, err = cli(capsys, *args)
            assert code == expected, (where, args, out, err)
            assert "Traceback" not in err and len(err.splitlines()) <= 2, (where, err)
            body = _timeless(json.loads(out)) if "--json" in args else None
            answers[where].append((code, body, err.split(":", 1)[0]))
    for step, (local, remote) in enumerate(zip(answers["local"], answers["remote"],
                                               strict=True)):
        assert local == remote, (_script(files)[step][0], _differences(local, remote))
    assert not (tmp_path / "unused-home").exists()

    # What the server did is what its own store says.
    with Client(process.base_url, api_key=keys["viewer"]) as viewer:
        production = viewer.get_model_version("iris", "@production")
        assert (production.version, production.sunset.isoformat()) == ("1.0.0",
                                                                       "2099-01-01")
        assert viewer.events("iris")[-1].reason == "checking"


def test_errors_on_a_server_say_why_with_the_exit_code_of_their_kind(
        server: tuple[ServerProcess, dict[str, str]], files: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    process, keys = server
    _remote(monkeypatch, tmp_path, process.base_url, keys["viewer"])
    code, _, err = cli(capsys, "alias", "set", "iris", "mine", "1.0.0")
    assert code == 1 and err.startswith("error: the viewer role does not allow")
    _remote(monkeypatch, tmp_path, process.base_url, None)
    code, _, err = cli(capsys, "models", "list")
    assert code == 1 and "key" in err.lower()
    _remote(monkeypatch, tmp_path, process.base_url, "mh_wrong_" + "z" * 40)
    code, _, err = cli(capsys, "models", "list")
    assert code == 1 and "z" * 40 not in err
    # Nobody listens there: exit 5 naming the address, never the key.
    _remote(monkeypatch, tmp_path, f"http://127.0.0.1:{free_port()}", "mh_secret_key")
    code, _, err = cli(capsys, "models", "list")
    assert code == 5 and "could not be reached" in err and "mh_secret_key" not in err
    code, _, err = cli(capsys, "--server", "ftp://host", "models", "list")
    assert code == 1 and "http://" in err
    # A command that works on a local store only refuses rather than act elsewhere.
    for command in (["runs", "list"], ["db", "upgrade"], ["keys", "list"]):
        code, _, err = cli(capsys, *command)
        assert code == 1 and "local store only" in err, command
    assert not (tmp_path / "unused-home").exists()
    # Registering by upload cannot ask the server to trust pickle.
    _remote(monkeypatch, tmp_path, process.base_url, keys["deployer"])
    code, _, err = cli(capsys, "register", files / "iris.skops", "--name", "iris",
                       "--trust-pickle")
    assert code == 1 and "MODELHOST_TRUST_PICKLE" in err


def test_a_folder_is_uploaded_whole(server: tuple[ServerProcess, dict[str, str]],
                                    files: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    process, keys = server
    folder = tmp_path / "model-folder"
    folder.mkdir()
    skops.io.dump(iris_model(C=2.0), folder / "model.skops")
    _remote(monkeypatch, tmp_path, process.base_url, keys["deployer"])
    code, out, err = cli(capsys, "register", folder, "--name", "iris-folder", "--json")
    assert code == 0, err
    version = json.loads(out)
    assert (version["model"], version["version"], version["flavor"]) == (
        "iris-folder", "1.0.0", "sklearn")
    # An input example with a missing value goes over as valid JSON (null), so the
    # server judges the example itself, as a local register does: this model cannot
    # predict a missing value, and says so (not "not a JSON list of records").
    example = iris_example(rows=3)
    example.loc[1, "petal_width"] = float("nan")
    with Client(process.base_url, api_key=keys["deployer"]) as remote, \
            pytest.raises(ModelLoadError, match="contains NaN"):
        remote.registry.register(name="iris-folder", path=folder / "model.skops",
                                 input_example=example)
    with Client(Settings(home=tmp_path / "local")) as local, \
            pytest.raises(ModelLoadError, match="contains NaN"):
        local.registry.register(name="iris-folder", path=folder / "model.skops",
                                input_example=example)


def test_jobs_and_batch_run_on_the_server(server: tuple[ServerProcess, dict[str, str]],
                                          files: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    process, keys = server
    _remote(monkeypatch, tmp_path, process.base_url, keys["admin"])
    if cli(capsys, "models", "show", "iris")[0] == 3:  # run alone: register it here
        assert cli(capsys, "register", files / "iris.skops", "--name", "iris")[0] == 0
        assert cli(capsys, "stage", "iris", "1.0.0", "production")[0] == 0
    _remote(monkeypatch, tmp_path, process.base_url, keys["predictor"])
    result = tmp_path / "result.jsonl"
    code, out, err = cli(capsys, "jobs", "submit", "iris", "--input", files / "rows.csv",
                         "--output", result, "--json")
    assert code == 0, err
    job = json.loads(out)
    assert (job["status"], job["rows"], job["rejected"]) == ("succeeded", 39, 1)
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    assert [line["row"] for line in lines] == [i for i in range(40) if i != 3]

    code, out, _ = cli(capsys, "jobs", "show", job["job_id"], "--json")
    assert code == 0 and _timeless(json.loads(out)) == _timeless(job)
    code, out, _ = cli(capsys, "jobs", "list", "--json")
    assert code == 0 and job["job_id"] in [j["job_id"] for j in json.loads(out)]
    code, out, _ = cli(capsys, "jobs", "result", job["job_id"], "--rejects")
    refused = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["row"] for r in refused] == [3]
    assert cli(capsys, "jobs", "show", "no-such-job")[0] == 3
    code, _, err = cli(capsys, "jobs", "submit", "ghost", "--input", files / "rows.csv")
    assert code == 3 and "ghost" in err

    # `batch` through the server: its output has the columns and values of in-process
    # prediction with the version the job used.
    output = tmp_path / "scored"
    code, out, err = cli(capsys, "batch", "iris", "--input", files / "rows.csv",
                         "--output", output, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["rows"], summary["rejected"]) == (39, 1)
    scored = pd.read_parquet(output)
    X = pd.read_csv(files / "rows.csv").drop(index=3).reset_index(drop=True)
    model = iris_model()
    assert list(scored.columns) == [*X.columns, "prediction", "probability_0",
                                    "probability_1", "probability_2", "model_version"]
    pd.testing.assert_frame_equal(scored[list(X.columns)], X)
    assert (scored["prediction"].to_numpy() == model.predict(X)).all()
    assert abs(scored[["probability_0", "probability_1", "probability_2"]].to_numpy()
               - model.predict_proba(X)).max() < 1e-9
    assert set(scored["model_version"]) == {summary["version"]}
    rejects = pd.read_parquet(summary["rejects"])
    assert list(rejects.columns) == [*X.columns, "reason"]
    assert "petal_width" in rejects.loc[0, "reason"]
    # An existing output is refused unless --overwrite; the server is not even asked.
    code, _, err = cli(capsys, "batch", "iris", "--input", files / "rows.csv",
                       "--output", output)
    assert code == 4 and "--overwrite" in err
    assert cli(capsys, "batch", "iris", "--input", files / "rows.csv", "--output", output,
               "--overwrite")[0] == 0
    code, _, err = cli(capsys, "batch", "iris", "--input", "dataset://rows",
                       "--output", tmp_path / "other")
    assert code == 1 and "jobs submit" in err

"""The command line: commands, --json output, exit codes, one-line errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import skops.io
from tests.conftest import head_revision
from tests.fixtures_models import iris_example, iris_model

from modelhost.cli import run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "iris.skops"
    skops.io.dump(iris_model(), path)
    return path


@pytest.fixture
def example_file(tmp_path: Path) -> Path:
    path = tmp_path / "example.json"
    path.write_text(iris_example().to_json(orient="records"))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_register_and_inspect(home: Path, model_file: Path, example_file: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "register", model_file, "--name", "iris",
                       "--input-example", example_file)
    assert code == 0 and "Registered iris 1.0.0" in out
    code, out, _ = cli(capsys, "register", model_file, "--name", "iris", "--json",
                       "--input-example", example_file)
    assert code == 0 and json.loads(out)["version"] == "1.0.1"
    code, out, _ = cli(capsys, "models", "list", "--json")
    assert [m["name"] for m in json.loads(out)] == ["iris"]
    code, out, _ = cli(capsys, "models", "versions", "iris")
    assert "1.0.0" in out and "1.0.1" in out
    assert cli(capsys, "stage", "iris", "1.0.0", "staging")[0] == 0
    code, out, _ = cli(capsys, "stage", "iris", "1.0.0", "production", "--json")
    assert json.loads(out)[0]["to_stage"] == "production"
    assert cli(capsys, "alias", "set", "iris", "champion", "1.0.0")[0] == 0
    code, out, _ = cli(capsys, "models", "show", "iris", "--json")
    data = json.loads(out)
    assert data["production_version"] == "1.0.0" and data["aliases"] == {"champion": "1.0.0"}
    assert cli(capsys, "deprecate", "iris", "1.0.1", "--sunset", "2999-01-01")[0] == 0
    code, out, _ = cli(capsys, "card", "iris", "champion")
    assert code == 0 and "# Model card: iris 1.0.0" in out
    card = home / "card.html"
    assert cli(capsys, "card", "iris", "1.0.0", "--format", "html", "-o", card)[0] == 0
    assert card.read_text().startswith("<!doctype html>")
    assert cli(capsys, "alias", "delete", "iris", "champion")[0] == 0


@pytest.mark.parametrize(("args", "code", "message"), [
    (["models", "show", "nope"], 3, "model 'nope' not found"),
    (["stage", "iris", "1.0.0", "production"], 4, "cannot move from stage 'none'"),
    (["stage", "iris", "9.9.9", "staging"], 3, "has no version or alias '9.9.9'"),
    (["register", "missing.skops", "--name", "x"], 3, "no such file"),
    (["alias", "set", "iris", "latest", "1.0.0"], 4, "reserved"),
    (["deprecate", "iris", "1.0.0", "--sunset", "yesterday"], 1, "invalid date"),
    (["card", "iris", "1.0.0", "--format", "pdf"], 1, "unknown card format"),
    (["models", "show", "../etc"], 1, "invalid model name"),
    (["stage", "iris", "1.0.0"], 2, "Missing argument"),
    (["no-such-command"], 2, "No such command"),
])
def test_errors_have_exit_codes_and_one_line(home: Path, model_file: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             args: list[str], code: int, message: str) -> None:
    assert cli(capsys, "register", model_file, "--name", "iris")[0] == 0
    got, _, err = cli(capsys, *args)
    assert got == code
    assert message in err
    assert "Traceback" not in err


def test_pickle_needs_the_trust_flag(home: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(iris_model()))
    code, _, err = cli(capsys, "register", path, "--name", "iris")
    assert code == 1 and "--trust-pickle" in err
    assert cli(capsys, "models", "list", "--json")[1].strip() == "[]"
    code, out, _ = cli(capsys, "register", path, "--name", "iris", "--trust-pickle", "--json")
    assert code == 0 and json.loads(out)["version"] == "1.0.0"


def test_database_down_exits_5(home: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELHOST_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    monkeypatch.setenv("MODELHOST_DB_CONNECT_TIMEOUT_S", "1")
    code, _, err = cli(capsys, "models", "list")
    assert code == 5 and "unavailable" in err and "Traceback" not in err


def test_debug_shows_the_traceback(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--debug", "models", "show", "nope")
    assert code == 3 and "Traceback" in err


def test_db_upgrade_runs_and_tracking_commands(home: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "db", "upgrade", "--json")
    assert code == 0 and json.loads(out)["to"] == head_revision()
    data = tmp_path / "d.csv"
    iris_example(rows=20).to_csv(data, index=False)
    code, out, _ = cli(capsys, "data", "add", data, "--name", "iris", "--json")
    assert code == 0 and json.loads(out)["created"] is True
    code, out, _ = cli(capsys, "data", "add", data, "--name", "iris")
    assert code == 0 and "Unchanged: already iris@1" in out
    code, out, _ = cli(capsys, "data", "versions", "iris", "--json")
    assert [v["version"] for v in json.loads(out)] == [1]
    code, out, _ = cli(capsys, "runs", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, _, err = cli(capsys, "runs", "show", "abcd")
    assert code == 3 and "run 'abcd' not found" in err


def test_quickstart_registers_two_versions_and_promotes_one(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "quickstart", "--no-serve", "--json")
    assert code == 0
    summary = json.loads(out)
    assert [v["version"] for v in summary["versions"]] == ["1.0.0", "1.0.1"]
    code, out, _ = cli(capsys, "models", "show", "breast-cancer", "--json")
    model = json.loads(out)
    assert model["production_version"] == summary["production"]
    assert model["aliases"] == {"champion": summary["production"]}
    lineage = model["versions"][0]["lineage"]
    assert lineage["run_id"] and lineage["dataset_versions"] == ["breast-cancer-train@1"]
    code, out, _ = cli(capsys, "runs", "list", "--json")
    assert {r["status"] for r in json.loads(out)} == {"FINISHED"}


def test_more_exit_codes_and_no_tracebacks(home: Path, model_file: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "register", model_file, "--name", "iris", "--version", "1.0.0")[0] == 0
    code, _, err = cli(capsys, "register", model_file, "--name", "iris", "--version", "1.0.0",
                       "--force")
    assert code == 4 and "already has version 1.0.0" in err
    code, _, err = cli(capsys, "alias", "delete", "iris", "nope")
    assert code == 3 and "no alias 'nope'" in err
    code, _, err = cli(capsys, "card", "iris", "1.0.0", "-o", tmp_path / "missing" / "c.md")
    assert code == 1 and "Traceback" not in err and "No such file or directory" in err
    assert str(tmp_path) not in err
    mlmodel = tmp_path / "torch-model"
    mlmodel.mkdir()
    (mlmodel / "MLmodel").write_text("flavors:\n  pytorch: {}\n")
    code, _, err = cli(capsys, "register", mlmodel, "--name", "torch")
    assert code == 1 and "pytorch" in err and "Traceback" not in err


def test_damaged_database_exits_5(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home.mkdir(parents=True)
    (home / "modelhost.db").write_bytes(b"garbage" * 1000)
    code, _, err = cli(capsys, "models", "list")
    assert code == 5 and "damaged" in err and "Traceback" not in err


def test_register_with_optimize(home: Path, model_file: Path, example_file: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "register", model_file, "--name", "iris", "--optimize",
                       "--input-example", example_file, "--json")
    assert code == 0
    version = json.loads(out)
    assert version["flavor_meta"]["optimize"]["chosen"] in ("onnx", "original")
    code, _, err = cli(capsys, "register", model_file, "--name", "x", "--optimize")
    assert code == 1 and "optimize needs" in err


def test_predict_in_process(home: Path, model_file: Path, example_file: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "register", model_file, "--name", "iris", "--input-example",
               example_file)[0] == 0
    assert cli(capsys, "stage", "iris", "1.0.0", "staging")[0] == 0
    assert cli(capsys, "stage", "iris", "1.0.0", "production")[0] == 0
    code, out, _ = cli(capsys, "predict", "iris", "--input", example_file)
    result = json.loads(out)
    assert code == 0 and result["version"] == "1.0.0"
    assert result["predictions"] == iris_model().predict(iris_example()).tolist()
    assert len(result["probabilities"]) == 5
    csv = tmp_path / "rows.csv"
    iris_example(rows=2).to_csv(csv, index=False)
    code, out, _ = cli(capsys, "predict", "iris", "--input", csv, "--version", "1.0.0")
    assert code == 0 and len(json.loads(out)["predictions"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('[{"sepal_length": "x"}]')
    code, _, err = cli(capsys, "predict", "iris", "--input", bad)
    assert code == 1 and "expected double, got string" in err


def test_adding_a_signature_is_a_minor_version(home: Path, model_file: Path,
                                                example_file: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "register", model_file, "--name", "iris")[0] == 0
    code, out, _ = cli(capsys, "register", model_file, "--name", "iris", "--json",
                       "--input-example", example_file)
    assert code == 0 and json.loads(out)["version"] == "1.1.0"


def test_untrusted_skops_types_are_named_with_the_flag_that_trusts_them(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from tests.fixtures_models import iris

    X, y = iris()
    path = tmp_path / "forest.skops"
    skops.io.dump(RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y), path)
    code, _, err = cli(capsys, "register", path, "--name", "forest")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "types that skops does not trust by default: sklearn.tree._tree.Tree;" in err
    assert "--trust-pickle" in err and "MODELHOST_TRUST_PICKLE=true" in err
    assert "save the model with skops" not in err
    code, out, _ = cli(capsys, "register", path, "--name", "forest", "--trust-pickle")
    assert code == 0 and "Registered forest 1.0.0" in out


def test_a_version_without_signature_predicts_on_the_columns_given(
        home: Path, model_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "register", model_file, "--name", "iris")[0] == 0
    csv = tmp_path / "example.csv"
    iris_example(rows=3).to_csv(csv, index=False)
    code, out, err = cli(capsys, "predict", "iris", "--version", "1.0.0", "--input", csv)
    assert code == 0, err
    result = json.loads(out)
    assert result["version"] == "1.0.0"
    assert result["predictions"] == iris_model().predict(iris_example(rows=3)).tolist()
    assert len(result["probabilities"]) == 3
    records = tmp_path / "rows.json"
    records.write_text(iris_example(rows=2).to_json(orient="records"))
    code, out, _ = cli(capsys, "predict", "iris", "--version", "1.0.0", "--input", records)
    assert code == 0 and len(json.loads(out)["predictions"]) == 2
    wrong = tmp_path / "wrong.json"
    wrong.write_text('[{"a": 1.0, "b": 2.0}]')
    code, _, err = cli(capsys, "predict", "iris", "--version", "1.0.0", "--input", wrong)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "the model failed to predict: it raised ValueError" in err
    assert "has no signature" in err and "--input-example" in err


def test_an_input_example_may_be_one_json_record(home: Path, model_file: Path,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    record = iris_example(rows=1).to_dict(orient="records")[0]
    one = tmp_path / "one.json"
    one.write_text(json.dumps(record))
    code, out, err = cli(capsys, "register", model_file, "--name", "iris", "--json",
                         "--input-example", one)
    assert code == 0, err
    assert [c["name"] for c in json.loads(out)["signature"]["inputs"]] == list(record)
    code, out, err = cli(capsys, "register", model_file, "--name", "iris", "--json",
                         "--input-example", json.dumps(record))  # inline JSON
    assert code == 0 and json.loads(out)["version"] == "1.0.1", err
    mixed = tmp_path / "mixed.json"
    mixed.write_text('{"sepal_length": 5.1, "sepal_width": [3.5, 3.0]}')
    code, _, err = cli(capsys, "register", model_file, "--name", "iris",
                       "--input-example", mixed)
    assert code == 1 and "mixes single values ('sepal_length') with lists of values" in err
    assert "must pass an index" not in err
    code, _, err = cli(capsys, "register", model_file, "--name", "iris",
                       "--input-example", '{"a": 1}')
    assert code == 1 and "predicting on the input example failed (ValueError: " in err
    assert "feature names" in err and "must pass an index" not in err


def test_predict_lists_every_problem_of_the_input(home: Path, model_file: Path,
                                                  example_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "register", model_file, "--name", "iris", "--input-example",
               example_file)[0] == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"sepal_length": "x", "sepal_width": "y", "petal_length": 1.0,
                                "extra": 1}, {"sepal_length": "z"}]))
    code, _, err = cli(capsys, "predict", "iris", "--version", "latest", "--input", bad)
    lines = err.strip().splitlines()
    assert code == 1 and lines[0].startswith("error: the input does not match the signature (")
    assert "more problem" not in err and "Traceback" not in err
    assert any("column 'sepal_length': expected double, got string at row 0" in x for x in lines)
    assert any("column 'sepal_width': expected double, got string at row 0" in x for x in lines)
    assert any("sepal_length" in x and "row 1" in x for x in lines)
    assert any("extra" in x for x in lines)
    assert len(lines) == 1 + int(lines[0].split("(")[1].split()[0])


def test_predict_refuses_a_version_past_its_sunset(home: Path, model_file: Path,
                                                   example_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    from modelhost import Client
    from modelhost.cli import exit_code_for
    from modelhost.errors import VersionSunsetError

    assert cli(capsys, "register", model_file, "--name", "iris", "--input-example",
               example_file)[0] == 0
    # Deprecated back when 2020-06-01 was still ahead: today it is past.
    with Client(home=home, today=lambda: dt.date(2020, 1, 1)) as client:
        client.registry.deprecate("iris", "1.0.0", sunset="2020-06-01")
    code, out, err = cli(capsys, "predict", "iris", "--version", "1.0.0",
                         "--input", example_file)
    assert code == exit_code_for(VersionSunsetError("iris", "1.0.0", "2020-06-01")), err
    assert out == "" and "Traceback" not in err
    assert err.strip() == "error: iris 1.0.0 reached its sunset on 2020-06-01 and is retired"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_predict_refuses_inputs_whose_outputs_overflow(home: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from sklearn.linear_model import LinearRegression
    from tests.fixtures_models import iris

    from modelhost.cli import exit_code_for
    from modelhost.errors import InvalidInputError

    X, _ = iris()  # petal_length from petal_width: a slope above 1
    path = tmp_path / "length.skops"
    skops.io.dump(LinearRegression().fit(X[["petal_width"]], X["petal_length"]), path)
    example = tmp_path / "example.json"
    example.write_text(X[["petal_width"]].head(3).to_json(orient="records"))
    assert cli(capsys, "register", path, "--name", "length", "--input-example",
               example)[0] == 0
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps([{"petal_width": 1.0}, {"petal_width": 1.7976931348623157e308}]))
    code, out, err = cli(capsys, "predict", "length", "--version", "latest", "--input", huge)
    assert code == exit_code_for(InvalidInputError("x")), err
    assert out == "" and "Traceback" not in err
    assert err.strip() == ("error: the model gives no finite result for these inputs "
                           "(values too large in magnitude?)")


def test_not_found_names_the_route_and_the_cli_names_the_command(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelhost.errors import ModelNotFoundError, VersionNotFoundError

    assert ModelNotFoundError("nope").message == "model 'nope' not found; see GET /v1/models"
    assert VersionNotFoundError("m", "9.9.9").message.endswith("see GET /v1/models/m/versions")
    code, _, err = cli(capsys, "models", "show", "nope")
    assert code == 3 and err.strip() == "error: model 'nope' not found; see 'modelhost models list'"


def test_runs_show_takes_a_unique_prefix_of_the_id(home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from modelhost import Client
    from modelhost.store import TrackingStore

    ids = iter(["abcd1111" + "0" * 24, "abcd2222" + "0" * 24, "ef01" + "0" * 28])
    with Client() as client:
        store = TrackingStore(client.db, new_run_id=lambda: next(ids))
        for name in ("first", "second", "third"):
            store.create_run("exp", name=name)
    code, out, err = cli(capsys, "runs", "show", "abcd1", "--json")
    assert code == 0 and json.loads(out)["name"] == "first", err
    code, out, _ = cli(capsys, "runs", "show", "EF01", "--json")
    assert code == 0 and json.loads(out)["name"] == "third"
    code, _, err = cli(capsys, "runs", "show", "abcd")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert ("run id prefix 'abcd' matches several runs (abcd1111" + "0" * 24 + ", abcd2222"
            + "0" * 24 + "); give more characters") in err
    code, _, err = cli(capsys, "runs", "show", "ef0")
    assert code == 1 and "run id prefix 'ef0' is too short: give at least 4" in err
    code, _, err = cli(capsys, "runs", "show", "abcd3")
    assert code == 3 and "run 'abcd3' not found" in err
    code, _, err = cli(capsys, "runs", "show", "abcd%")
    assert code == 3 and "run 'abcd%' not found" in err


def test_register_a_python_import_path_from_the_current_folder(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys
    import uuid

    module = f"slowmod_{uuid.uuid4().hex[:8]}"
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / f"{module}.py").write_text(
        "class Slow:\n"
        "    def predict(self, X):\n"
        "        return [len(X.columns)] * len(X)\n"
        "class Broken:\n"
        "    def predict(self, X):\n"
        "        raise ValueError(f'cannot read {__file__}: no weights')\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(code_dir))])
    monkeypatch.chdir(code_dir)
    code, out, err = cli(capsys, "register", f"{module}:Slow", "--flavor", "python",
                         "--name", "slow", "--json")
    assert code == 0, err
    assert json.loads(out)["flavor"] == "python"
    assert json.loads(out)["flavor_meta"] == {"format": "import", "target": f"{module}:Slow"}
    code, out, err = cli(capsys, "register", f"{module}:Slow", "--name", "slow")  # detected
    assert code == 0 and "Registered slow 1.0.1 (python" in out, err
    rows = code_dir / "rows.json"
    rows.write_text('[{"a": 1, "b": 2}]')
    code, out, err = cli(capsys, "predict", "slow", "--version", "latest", "--input", rows)
    assert code == 0 and json.loads(out)["predictions"] == [2], err
    assert cli(capsys, "register", f"{module}:Broken", "--name", "broken")[0] == 0
    code, _, err = cli(capsys, "predict", "broken", "--version", "latest", "--input", rows)
    assert code == 1 and "it raised ValueError: cannot read <path> no weights" in err
    assert str(code_dir) not in err and "Traceback" not in err
    code, _, err = cli(capsys, "register", "nosuchmod_x:Thing", "--name", "slow")
    assert code == 1 and "no such file" not in err and "nosuchmod_x:Thing" in err
    code, _, err = cli(capsys, "register", "not-an-import-path", "--flavor", "python",
                       "--name", "slow")
    assert code == 1 and "expected 'package.module:attr'" in err


def test_quickstart_hints_call_modelhost_the_way_the_shell_can(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from modelhost.cli.quickstart import _print_summary, cli_command

    bin_dir = tmp_path / "project" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "modelhost"
    script.write_text("#!/bin/sh\n")
    (bin_dir / "activate").write_text("")
    python = str(bin_dir / "python")
    project = tmp_path / "project"
    # Not on PATH: the path from the current folder, or the whole path from elsewhere.
    assert cli_command(argv0=str(script), executable=python, on_path="",
                       cwd=project) == ".venv/bin/modelhost"
    assert cli_command(argv0="pytest", executable=python, on_path="",
                       cwd=project) == ".venv/bin/modelhost"
    assert cli_command(argv0=str(script), executable=python, on_path="",
                       cwd=tmp_path / "elsewhere") == str(script)
    # On PATH (the same file): the bare name.
    assert cli_command(argv0=str(script), executable=python, on_path=str(script),
                       cwd=project) == "modelhost"
    other = tmp_path / "other" / "modelhost"
    other.parent.mkdir()
    other.write_text("")
    assert cli_command(argv0=str(script), executable=python, on_path=str(other),
                       cwd=project) == ".venv/bin/modelhost"

    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    results = [{"version": "1.0.0", "kind": "logistic-regression", "auc": 0.99},
               {"version": "1.0.1", "kind": "random-forest", "auc": 0.98}]
    command = cli_command(argv0=str(script), executable=python)  # PATH and cwd as set
    _print_summary(results, results[0], port=8000, serve=False, example=[{"a": 1.0}],
                   command=command)
    out = capsys.readouterr().out
    assert "run 'source .venv/bin/activate' to call it by name" in out
    assert "  .venv/bin/modelhost models show breast-cancer\n" in out
    assert "  .venv/bin/modelhost serve " in out
    assert "\n  modelhost " not in out


def test_the_lazy_console_serves_rich_progress_displays(
        capsys: pytest.CaptureFixture[str]) -> None:
    from rich.progress import Progress

    from modelhost.cli._app import out

    with Progress(transient=True, console=out) as progress:  # rich enters the console
        progress.advance(progress.add_task("work", total=1))
    with Progress(transient=True, console=out.real) as progress:
        progress.advance(progress.add_task("work", total=1))
    with out:
        out.print("inside a block")
    assert "inside a block" in capsys.readouterr().out


def test_monitor_performance(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    from modelhost import Client
    from modelhost._utils import utcnow
    from modelhost.store.monitoring import Label, LogEntry

    with Client() as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example(),
                                 metrics={"accuracy": 0.75})
        store = client.predictions
        store.append([LogEntry(f"r{i}", "iris", "1.0.0", "stable",
                               utcnow() - dt.timedelta(minutes=1), 1, "[]",
                               f'{{"predictions": [{i % 2}]}}') for i in range(4)])
        store.record_feedback([Label(f"r{i}", "iris", "1.0.0", "[0]") for i in range(4)],
                              now=utcnow())
    code, out, _ = cli(capsys, "monitor", "performance", "iris", "--version", "1.0.0",
                       "--json")
    assert code == 0, out
    body = json.loads(out)
    assert (body["labelled"], body["metrics"]["accuracy"]) == (4, 0.5)
    assert body["change"] == {"accuracy": -0.25}
    code, out, _ = cli(capsys, "monitor", "performance", "iris", "--version", "1.0.0")
    assert code == 0 and "4 labelled rows from 4 logged requests (classification)" in out
    assert "accuracy" in out and "-0.2500" in out
    code, out, _ = cli(capsys, "monitor", "performance", "iris", "--version", "1.0.0",
                       "--window", "5218w", "--json")
    assert code == 0 and json.loads(out)["labelled"] == 4
    code, _, err = cli(capsys, "monitor", "performance", "iris", "--window", "soon")
    assert code == 1 and "'soon' is not a duration" in err


def test_durations_are_checked_before_anything_is_stored(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "keys", "create", "--name", "forever", "--role", "viewer",
                       "--expires-in", "999999w")
    assert code == 1 and "'999999w' is longer than 100 years (5218w)" in err
    assert "Traceback" not in err and "OverflowError" not in err
    code, out, _ = cli(capsys, "keys", "list", "--json")
    assert code == 0 and json.loads(out) == []  # nothing was created
    code, out, _ = cli(capsys, "keys", "create", "--name", "month", "--role", "viewer",
                       "--expires-in", "30d")
    assert code == 0, out

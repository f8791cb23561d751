"""``modelhost quickstart``: the whole loop on data bundled with scikit-learn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, out

MODEL_NAME = "breast-cancer"


@app.command("quickstart")
def quickstart(
    serve: bool = typer.Option(True, "--serve/--no-serve",
                               help="Start the server at the end (Ctrl+C stops it)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train two versions of a demo model, register them with lineage, promote the
    better one to production, start the server and print what to try."""
    from rich.progress import Progress

    client = STATE.client(local_only=True)
    with Progress(transient=True, console=out.real, disable=as_json) as progress:
        task = progress.add_task("Training and registering", total=3)
        data_path, frame, target = _write_dataset(client.settings.home)
        progress.advance(task)
        results = [_train_and_register(client, data_path, frame, target, candidate)
                   for candidate in _CANDIDATES]
        progress.advance(task)
        best = max(results, key=lambda r: r["auc"])
        client.registry.transition(MODEL_NAME, best["version"], "staging",
                                   reason="quickstart: best holdout AUC")
        client.registry.transition(MODEL_NAME, best["version"], "production",
                                   reason="quickstart: best holdout AUC")
        client.registry.set_alias(MODEL_NAME, "champion", best["version"])
        progress.advance(task)
    summary = {"model": MODEL_NAME, "versions": results, "production": best["version"],
               "home": str(client.settings.home)}
    if as_json:
        emit(summary, as_json=True)
    else:
        _print_summary(results, best, port=port, serve=serve, command=cli_command(),
                       example=client.registry.get_version(MODEL_NAME, best["version"])
                       .input_example[:1])
    if serve:
        from modelhost.cli.serve import run_server

        run_server(client.settings, host="127.0.0.1", port=port)


def _print_summary(results: list[dict[str, Any]], best: dict[str, Any], *, port: int,
                   serve: bool, example: Any, command: str = "modelhost") -> None:
    import json

    out.print(f"[bold green]Registered {MODEL_NAME}[/bold green] from scikit-learn's "
              "breast cancer dataset:")
    for r in results:
        marker = "  <- production (alias champion)" if r is best else ""
        out.print(f"  {r['version']}  {r['kind']:<20} holdout AUC {r['auc']:.4f}{marker}")
    mh = command
    out.print("\nTry next:")
    activate = Path(mh).parent / "activate"
    if mh != "modelhost" and activate.is_file():
        out.print(f"  (modelhost is not on your PATH; run 'source {activate}' to call it "
                  "by name)", markup=False, highlight=False)
    lines = [f"{mh} models show {MODEL_NAME}",
             f"{mh} card {MODEL_NAME} {best['version']}",
             f"{mh} runs list",
             f"{mh} data versions breast-cancer-train"]
    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"inputs": example})
    other = next(r["version"] for r in results if r is not best)
    if serve:
        lines += [f"curl -s {url}/readyz",
                  f"curl -s -X POST {url}/v1/models/{MODEL_NAME}/predict "
                  f"-H 'Content-Type: application/json' -d '{body}'",
                  f"curl -s -X POST {url}/v1/models/{MODEL_NAME}/versions/{other}/predict "
                  f"-H 'Content-Type: application/json' -d '{body}'",
                  f"{mh} bench {MODEL_NAME} --url {url} --concurrency 16 --duration 5",
                  f"open {url}/ui      # the web console",
                  f"open {url}/docs    # the API's documentation"]
    else:
        lines.append(f"{mh} serve        # then POST to /v1/models/breast-cancer/predict")
    for line in lines:
        out.print(f"  {line}", markup=False, highlight=False)


def cli_command(*, argv0: str | None = None, executable: str | None = None,
                on_path: str | None = None, cwd: Path | None = None) -> str:
    """How the user's shell reaches this ``modelhost``: ``modelhost`` when that name on
    PATH is this program, else its path (relative to ``cwd`` when below it), e.g.
    ``.venv/bin/modelhost`` after ``make demo``. Defaults: ``sys.argv[0]``,
    ``sys.executable``, ``shutil.which("modelhost")`` and the current folder."""
    import shutil
    import sys

    running = _running_script(sys.argv[0] if argv0 is None else argv0,
                              sys.executable if executable is None else executable)
    if running is None:
        return "modelhost"
    found = shutil.which("modelhost") if on_path is None else on_path
    if found and Path(found).exists() and Path(found).samefile(running):
        return "modelhost"
    here = Path.cwd() if cwd is None else cwd
    try:
        return str(running.relative_to(here.absolute()))
    except ValueError:
        return str(running)


def _running_script(argv0: str, executable: str) -> Path | None:
    """The ``modelhost`` script being run: ``argv0`` itself, or the one installed next to
    the interpreter (tests, ``python -c``). Links are not followed: a venv's python links
    to the system one, but its scripts live in the venv."""
    for candidate in (Path(argv0), Path(executable).parent / "modelhost"):
        if candidate.name == "modelhost" and candidate.is_file():
            return candidate.absolute()
    return None


_CANDIDATES = (
    {"kind": "logistic-regression", "params": {"C": 0.05}},
    {"kind": "random-forest", "params": {"n_estimators": 100, "max_depth": 6}},
)


def _write_dataset(home: Any) -> tuple[Any, Any, Any]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: str(c).replace(" ", "_"))
    folder = Path(home) / "quickstart"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "breast_cancer.csv"
    frame.to_csv(path, index=False)
    return path, frame, "target"


def _train_and_register(client: Any, data_path: Any, frame: Any, target: str,
                        candidate: dict[str, Any]) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = frame.drop(columns=[target])
    y = frame[target]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    params = candidate["params"]
    model: Any
    if candidate["kind"] == "logistic-regression":
        model = make_pipeline(StandardScaler(), LogisticRegression(C=params["C"], max_iter=1000))
    else:
        model = RandomForestClassifier(random_state=0, n_jobs=1, **params)
    with client.tracking.start_run("quickstart", name=candidate["kind"],
                                   params={"model": candidate["kind"], **params}) as run:
        run.log_dataset(data_path, name="breast-cancer-train")
        model.fit(X_train, y_train)
        auc = float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))
        run.log_metrics({"auc": auc, "accuracy": float(accuracy_score(y_test,
                                                                       model.predict(X_test)))})
        mv = run.log_model(model, name=MODEL_NAME, input_example=X_test.head(5),
                           description=f"{candidate['kind']} on the breast cancer dataset")
    return {"version": mv.version, "kind": candidate["kind"], "auc": auc, "run_id": run.run_id}

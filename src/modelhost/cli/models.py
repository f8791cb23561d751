"""Registry commands: models, register, stage, alias, deprecate, card."""

from __future__ import annotations

from pathlib import Path

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, make_table, out, sub_app
from modelhost.entities import ModelVersion

models_app = sub_app("List and inspect registered models.")
alias_app = sub_app("Point movable labels (champion, challenger) at versions.")
app.add_typer(models_app, name="models")
app.add_typer(alias_app, name="alias")


def _version_rows(versions: list[ModelVersion]) -> list[tuple[object, ...]]:
    return [(v.version, v.stage.value, v.flavor, ",".join(v.aliases),
             v.sunset.isoformat() if v.sunset else "",
             v.created_at.strftime("%Y-%m-%d %H:%M")) for v in versions]


@models_app.command("list")
def models_list(as_json: bool = JSON_OPTION) -> None:
    """List models with their latest and production versions."""
    models = STATE.manager().registry.list_models()
    emit([m.to_dict() for m in models], as_json=as_json, table=make_table(
        "NAME", "LATEST", "PRODUCTION", "ALIASES",
        rows=[(m.name, m.latest_version, m.production_version,
               ",".join(f"{a}={v}" for a, v in m.aliases.items())) for m in models])
        if models else "No models yet. Register one with 'modelhost register PATH --name NAME'.")


@models_app.command("show")
def models_show(name: str, as_json: bool = JSON_OPTION) -> None:
    """Show a model and its versions."""
    registry = STATE.manager().registry
    model = registry.get_model(name)
    versions = registry.list_versions(name)
    data = {**model.to_dict(), "versions": [v.to_dict() for v in versions]}
    emit(data, as_json=as_json, table=None)
    if not as_json:
        out.print(f"[bold]{model.name}[/bold]  latest {model.latest_version}  "
                  f"production {model.production_version or '-'}")
        if model.description:
            out.print(model.description, markup=False)
        out.print(make_table("VERSION", "STAGE", "FLAVOR", "ALIASES", "SUNSET", "CREATED",
                             rows=_version_rows(versions)))


@models_app.command("versions")
def models_versions(name: str, as_json: bool = JSON_OPTION) -> None:
    """List the versions of a model."""
    versions = STATE.manager().registry.list_versions(name)
    emit([v.to_dict() for v in versions], as_json=as_json, table=make_table(
        "VERSION", "STAGE", "FLAVOR", "ALIASES", "SUNSET", "CREATED",
        rows=_version_rows(versions)))


@app.command("register")
def register(
    path: str = typer.Argument(..., help="Model file (.skops, .onnx, .joblib), folder (an "
                               "MLflow model with MLmodel), or for the python flavor an "
                               "import path package.module:attr (the current folder is "
                               "importable)."),
    name: str = typer.Option(..., "--name", help="Model name."),
    flavor: str | None = typer.Option(None, "--flavor", help="sklearn, onnx, python or "
                                      "mlflow (detected from the path when omitted)."),
    version: str | None = typer.Option(None, "--version", help="Explicit MAJOR.MINOR.PATCH "
                                       "(auto-bumped from the signature when omitted)."),
    force: bool = typer.Option(False, "--force", help="Accept a version that breaks the "
                               "semver rule."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow pickle-based "
                                      "files; they can run code when loaded."),
    input_example: str | None = typer.Option(None, "--input-example", help="CSV or JSON "
                                             "file with a few input rows, or inline JSON "
                                             "(one record or a list of records)."),
    description: str = typer.Option("", "--description"),
    optimize: bool = typer.Option(False, "--optimize", help="Also convert a scikit-learn "
                                  "model to ONNX; serve it if it agrees and is faster."),
    feature_service: str | None = typer.Option(
        None, "--feature-service", help="The feature service the model was trained with "
        "(latest definitions): the server looks its features up from the request's keys."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a model file or folder, or a python import path, as a new version."""
    example = _read_example(input_example) if input_example else None
    target: str | None = None
    source: Path | None = Path(path)
    if _is_import_path(path, flavor):
        target, source, flavor = path, None, "python"
    mv = STATE.manager().registry.register(
        target, name=name, path=source, flavor=flavor, version=version, force=force,
        trust_pickle=trust_pickle, input_example=example, description=description,
        optimize=optimize, feature_service=feature_service)
    emit(mv.to_dict(), as_json=as_json,
         table=f"Registered {mv.model} {mv.version} ({mv.flavor}, "
               f"sha256:{mv.artifact_digest[:12]})")


def _is_import_path(value: str, flavor: str | None) -> bool:
    """``package.module:attr`` for the python flavor: not an existing file or folder, and
    either shaped like an import path or registered with ``--flavor python``."""
    if flavor not in (None, "python") or Path(value).exists():
        return False
    from modelhost.flavors.python import is_import_target

    return flavor == "python" or is_import_target(value)


def _read_example(value: str) -> object:
    from modelhost.cli.inputs import read_inline_json, read_input_file

    if value.lstrip()[:1] in ("{", "[") and not Path(value).exists():
        return read_inline_json(value, what="--input-example")
    return read_input_file(Path(value))


@app.command("stage")
def stage(name: str, version: str, stage: str,
          reason: str = typer.Option("", "--reason", help="Why, for the history."),
          as_json: bool = JSON_OPTION) -> None:
    """Move a version to a stage: none, staging, production or archived."""
    changes = STATE.manager().registry.transition(name, version, stage, reason=reason)
    emit([c.to_dict() for c in changes], as_json=as_json, table="\n".join(
        f"{c.model} {c.version}: {c.from_stage.value} -> {c.to_stage.value}" for c in changes)
        or f"{name} {version} is already in stage {stage}")


@alias_app.command("set")
def alias_set(name: str, alias: str, version: str, as_json: bool = JSON_OPTION) -> None:
    """Point ALIAS at VERSION (moving it if it exists)."""
    mv = STATE.manager().registry.set_alias(name, alias, version)
    emit({"model": name, "alias": alias, "version": mv.version}, as_json=as_json,
         table=f"{name}@{alias} -> {mv.version}")


@alias_app.command("delete")
def alias_delete(name: str, alias: str, as_json: bool = JSON_OPTION) -> None:
    """Remove an alias."""
    STATE.manager().registry.delete_alias(name, alias)
    emit({"model": name, "alias": alias, "deleted": True}, as_json=as_json,
         table=f"Deleted alias {alias} of {name}")


@app.command("deprecate")
def deprecate(name: str, version: str,
              sunset: str = typer.Option(..., "--sunset", help="YYYY-MM-DD after which the "
                                         "version answers 410 Gone."),
              as_json: bool = JSON_OPTION) -> None:
    """Deprecate a version with a sunset date."""
    mv = STATE.manager().registry.deprecate(name, version, sunset=sunset)
    emit(mv.to_dict(), as_json=as_json,
         table=f"{name} {mv.version} is deprecated; sunset on {sunset}")


@app.command("card")
def card(name: str, version: str,
         format: str = typer.Option("md", "--format", help="md or html."),
         output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file.")
         ) -> None:
    """Print (or write) the model card of a version."""
    text = STATE.manager().registry.card(name, version, format=format)
    if output is None:
        out.print(text, markup=False, highlight=False)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"Wrote {output}")

"""Pipeline commands: ``pipeline run`` and ``reproduce``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import (
    EXIT_USER_ERROR,
    JSON_OPTION,
    STATE,
    app,
    emit,
    err,
    make_table,
    out,
    sub_app,
)

if TYPE_CHECKING:
    from modelhost.pipelines import PipelineResult, ReproduceReport, StepResult

# The pipelines package (pydantic, YAML) and rich load when a command runs, not for
# every `modelhost` call.
DEFAULT_TOLERANCE = 1e-6  # modelhost.pipelines.reproduce.DEFAULT_TOLERANCE (tested)

pipeline_app = sub_app("Training pipelines with quality gates (modelhost.yaml).")
app.add_typer(pipeline_app, name="pipeline")

_STYLE = {"ran": "green", "skipped": "cyan", "failed": "bold red", "not run": "dim"}


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class _StepPrinter:
    """Prints one line per finished step, with a spinner while a step runs."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._status: Any = None

    def started(self, step: str) -> None:
        if self.enabled and out.is_terminal:
            self._status = out.status(f"{step} ...")
            self._status.start()

    def finished(self, result: StepResult) -> None:
        from modelhost.pipelines import StepStatus

        if self._status is not None:
            self._status.stop()
            self._status = None
        if not self.enabled:
            return
        style = _STYLE[result.status.value]
        timing = f"{result.seconds:6.2f}s" if result.status is not StepStatus.NOT_RUN else \
            " " * 7
        message = result.message if result.status is not StepStatus.FAILED else (
            result.message if result.kind in ("validate", "gate") else result.error or "")
        line = f"  {result.name:<12} [{style}]{result.label:<20}[/{style}] {timing}  " \
               f"{escape(_first_line(message))}"
        out.print(line.rstrip(), highlight=False)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


@pipeline_app.command("run")
def pipeline_run(
    spec: Path = typer.Argument(Path("modelhost.yaml"), help="The pipeline spec (or its "
                                "folder)."),
    reason: str | None = typer.Option(None, "--reason", help="Why this run starts (e.g. a "
                                      "monitoring alert); also trains on the newest version "
                                      "of every dataset."),
    force: bool = typer.Option(False, "--force", help="Run every step, even unchanged ones."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the pipeline: validate, your steps, gates, register, deploy.

    Unchanged steps are skipped; exit code 1 when validation, a gate or a step fails.
    """
    from modelhost.pipelines import PipelineRunner, RunOptions, load_spec

    if reason is not None and not reason.strip():
        raise typer.BadParameter("give a non-empty reason", param_hint="--reason")
    pipeline = load_spec(spec)
    if not as_json:
        out.print(f"[bold]Pipeline {pipeline.spec.name}[/bold] ({pipeline.file.name})"
                  + (f" - reason: {escape(reason)}" if reason else ""), highlight=False)
    runner = PipelineRunner(pipeline, STATE.client(), observer=_StepPrinter(enabled=not as_json))
    result = runner.run(RunOptions(reason=reason, force=force))
    if as_json:
        emit(result.to_dict(), as_json=True)
    else:
        _print_report(result)
    if not result.ok:
        _print_failure(result, debug=STATE.debug)
        raise typer.Exit(EXIT_USER_ERROR)


def _print_report(result: PipelineResult) -> None:
    if result.datasets:
        out.print("Data: " + ", ".join(d["description"] for d in result.datasets),
                  highlight=False)
    for validation in result.validation:
        if not validation.ok:
            out.print(f"[bold red]Validation of {validation.ref} failed[/bold red]")
            out.print(escape(validation.summary), highlight=False)
    if result.gates:
        out.print("Gates:")
        for gate in result.gates:
            mark = "[green]passed[/green]" if gate.passed else "[bold red]FAILED[/bold red]"
            out.print(f"  {mark}  {escape(gate.name)}: {escape(gate.message)}",
                      highlight=False)
    commit = f", git {result.git_commit[:12]}" if result.git_commit else ""
    dirty = " (uncommitted changes)" if result.git_dirty else ""
    out.print(f"Run {result.run_id} (experiment {result.experiment}{commit}{dirty})",
              highlight=False)
    if result.ok:
        out.print(f"[bold green]{escape(result.summary())}[/bold green]")


def _print_failure(result: PipelineResult, *, debug: bool) -> None:
    failed = result.failed_step
    if debug and failed is not None and failed.traceback:
        err.print(failed.traceback, markup=False, highlight=False)
    err.print(f"error: {result.summary()}", markup=False, highlight=False)


@app.command("reproduce")
def reproduce_command(
    name: str = typer.Argument(..., help="Model name."),
    version: str = typer.Argument(..., help="Version (or alias) to reproduce."),
    spec: Path | None = typer.Option(None, "--spec", help="The pipeline's modelhost.yaml "
                                     "(default: where the original run found it)."),
    tolerance: float = typer.Option(DEFAULT_TOLERANCE, "--tolerance", min=0.0,
                                    help="Largest absolute difference per metric that "
                                    "still matches."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-run the pipeline behind a version (same commit, params and dataset versions)
    and check that its metrics match."""
    from modelhost.pipelines import reproduce

    if not as_json:
        out.print(f"[bold]Reproducing {escape(name)} {escape(version)}[/bold]",
                  highlight=False)
    report = reproduce(STATE.client(), name, version, spec=spec, tolerance=tolerance,
                       observer=_StepPrinter(enabled=not as_json))
    if as_json:
        emit(report.to_dict(), as_json=True)
    else:
        _print_reproduction(report)
    if not report.ok:
        failed = report.result.failed_step
        if STATE.debug and failed is not None and failed.traceback:
            err.print(failed.traceback, markup=False, highlight=False)
        err.print(f"error: {_reproduction_problem(report)}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USER_ERROR)


def _print_reproduction(report: ReproduceReport) -> None:
    for note in report.notes:
        out.print(f"note: {escape(note)}", highlight=False)
    if report.datasets:
        out.print("Data: " + ", ".join(f"{n}@{v}" for n, v in sorted(report.datasets.items())),
                  highlight=False)
    if report.comparisons:
        out.print(make_table("METRIC", "ORIGINAL", "REPRODUCED", "DIFF", "MATCH", rows=[
            (c.metric, f"{c.original:.6g}",
             "-" if c.reproduced is None else f"{c.reproduced:.6g}",
             "-" if c.diff is None else f"{c.diff:+.3g}", "yes" if c.within else "NO")
            for c in report.comparisons]))
    if report.ok:
        out.print(f"[bold green]Reproduced {report.model} {report.version}: every metric "
                  f"matches within {report.tolerance:g}[/bold green]")


def _reproduction_problem(report: ReproduceReport) -> str:
    if not report.result.ok:
        return f"the pipeline did not finish: {report.result.summary()}"
    if not report.comparisons:
        return "the original run logged no metrics to compare"
    bad = [c for c in report.comparisons if not c.within]
    return (f"{len(bad)} of {len(report.comparisons)} metrics differ by more than the "
            f"tolerance {report.tolerance:g}: " + ", ".join(
                f"{c.metric} ({'missing' if c.diff is None else f'{c.diff:+.3g}'})"
                for c in bad))

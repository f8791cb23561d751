"""The ``modelhost`` command line: thin Typer commands over the Client; the only
place that prints."""

from modelhost.cli import (  # noqa: F401  # registers commands
    alerts,
    batch,
    bench,
    db,
    features,
    jobs,
    models,
    monitor,
    pipeline,
    quickstart,
    rollout,
    security,
    serve,
    stream,
    tracking,
    transfer,
)
from modelhost.cli._app import app, exit_code_for, main, run

__all__ = ["app", "exit_code_for", "main", "run"]

"""The Typer application, its global options, and the one table of exit codes."""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import typer

from modelhost.errors import (
    ConflictError,
    ModelhostError,
    NotFoundError,
    PortInUseError,
    SignatureViolationError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.table import Table

    from modelhost.client import Client
    from modelhost.config import Settings
    from modelhost.remote import RemoteClient

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5

# The one table from errors to exit codes (PRODUCT.md §2); the first match wins.
_EXIT_CODES: tuple[tuple[type[ModelhostError], int], ...] = (
    (NotFoundError, EXIT_NOT_FOUND),
    (ConflictError, EXIT_CONFLICT),
    (StoreUnavailableError, EXIT_UNAVAILABLE),
    (PortInUseError, EXIT_UNAVAILABLE),
    (ModelhostError, EXIT_USER_ERROR),
)


def exit_code_for(error: ModelhostError) -> int:
    return next(code for kind, code in _EXIT_CODES if isinstance(error, kind))


# Help is plain text (rich_markup_mode=None): rendering it with rich costs more than
# the rest of `modelhost --help` together.
app = typer.Typer(
    name="modelhost", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    help="Turn trained models into versioned prediction APIs and keep them healthy.")


def sub_app(help: str) -> typer.Typer:
    """A command group (``modelhost models ...``) styled like the root app."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


class _LazyConsole:
    """A rich Console made on first use: importing rich costs about 0.1 s, which
    ``--help`` and commands printing nothing should not pay."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    @property
    def real(self) -> Any:
        """The rich Console itself: what rich's own objects (Progress, Live) need."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    # Special methods are looked up on the type, never through __getattr__.
    def __enter__(self) -> Any:
        return self.real.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.real.__exit__(*exc)


out: Any = _LazyConsole(soft_wrap=True)
err: Any = _LazyConsole(stderr=True, soft_wrap=True)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


@dataclass
class State:
    home: Path | None = None
    db_url: str | None = None
    artifacts: str | None = None
    debug: bool = False
    server: str | None = None
    api_key: str | None = field(default=None, repr=False)
    _client: Client | None = field(default=None, repr=False)
    _remote: RemoteClient | None = field(default=None, repr=False)

    def settings(self, *, local_only: bool = False) -> Settings:
        """The local store's settings (see :meth:`client` for ``local_only``)."""
        if not local_only:
            self._refuse_server()
        from modelhost.config import Settings

        overrides: dict[str, Any] = {}
        if self.home is not None:
            overrides["home"] = self.home
        if self.db_url is not None:
            overrides["db_url"] = self.db_url
        if self.artifacts is not None:
            overrides["artifacts"] = self.artifacts
        return Settings(**overrides)

    def client(self, *, local_only: bool = False) -> Client:
        """The local store. A command that works on it alone refuses to run when a
        server is named, rather than quietly change another store than the user meant;
        ``local_only`` commands (serve, quickstart) run locally whatever is named."""
        if not local_only:
            self._refuse_server()
        if self._client is None:
            from modelhost.client import Client

            self._client = Client(self.settings(local_only=True))
        return self._client

    def _refuse_server(self) -> None:
        if self.server is not None:
            from modelhost.errors import InvalidInputError

            raise InvalidInputError(
                "this command works on a local store only, and a server is named "
                "(--server or MODELHOST_SERVER); unset it to run the command here")

    def manager(self) -> Client | RemoteClient:
        """What the management commands (models, register, stage, alias, deploy,
        rollout, jobs, batch) act on: the server named by --server, or the local store."""
        if self.server is None:
            return self.client()
        if self._remote is None:
            from modelhost.remote import RemoteClient

            self._remote = RemoteClient(self.server, api_key=self.api_key)
        return self._remote

    def close(self) -> None:
        for client in (self._client, self._remote):
            if client is not None:
                client.close()


STATE = State()


@app.callback()
def _root(
    home: Path | None = typer.Option(None, "--home", envvar="MODELHOST_HOME",
                                     help="Folder of the embedded database and artifacts."),
    db_url: str | None = typer.Option(None, "--db-url", envvar="MODELHOST_DB_URL",
                                      help="Database URL (default: SQLite in --home).",
                                      show_default=False),
    artifacts: str | None = typer.Option(None, "--artifacts", envvar="MODELHOST_ARTIFACTS",
                                         help="Artifact store URI (folder or s3://...)."),
    server: str | None = typer.Option(None, "--server", envvar="MODELHOST_SERVER",
                                      help="Run the management commands against the "
                                      "modelhost server at this URL (http://host:8000).",
                                      show_default=False),
    api_key: str | None = typer.Option(None, "--api-key", envvar="MODELHOST_API_KEY",
                                       help="API key for --server (prefer the "
                                       "environment variable: a command line is visible "
                                       "to other users).", show_default=False),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    STATE.home, STATE.db_url, STATE.artifacts, STATE.debug = home, db_url, artifacts, debug
    STATE.server, STATE.api_key = server or None, api_key or None


def emit(data: Any, *, as_json: bool, table: Table | str | None = None) -> None:
    """Print ``data`` as JSON, or ``table`` (a rich table or text) for people."""
    if as_json:
        out.print_json(json.dumps(data, default=str))
    elif table is not None:
        out.print(table)


def make_table(*headers: str, rows: list[tuple[Any, ...]]) -> Table:
    from rich.table import Table

    table = Table(*headers, box=None, header_style="bold")
    for row in rows:
        table.add_row(*("" if c is None else str(c) for c in row))
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and exit with) its exit code. Never shows a traceback for
    user errors unless ``--debug`` is given."""
    code = run(argv)
    sys.exit(code)


def run(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    STATE.__init__()  # type: ignore[misc]  # a fresh state per invocation (tests run many)
    _importable_cwd()
    try:
        # Standalone mode: Typer reports usage errors itself (exit code 2) and exits
        # through SystemExit; our own errors pass through to the handlers below.
        app(args=args, prog_name="modelhost")
        return EXIT_OK
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    except ModelhostError as exc:
        _report(exc, _error_text(exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except OSError as exc:  # a file the user named: unreadable, unwritable, missing
        _report(exc, f"error: {exc.strerror or type(exc).__name__}"
                     + (f": {Path(exc.filename).name}" if exc.filename else ""))
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001  # no traceback for users; --debug has it
        if _is_validation_error(exc):  # settings from the environment or options
            _report(exc, f"error: invalid configuration: {_first_validation_error(exc)}")
            return EXIT_USER_ERROR
        _report(exc, f"error: unexpected {type(exc).__name__}; rerun with --debug for "
                     "details")
        return EXIT_USER_ERROR
    finally:
        STATE.close()


def _importable_cwd() -> None:
    """Make modules in the current folder importable, as ``python -m`` does: models
    registered by import path (``slowmod:Slow``) live there. A console script starts
    with its own bin folder on ``sys.path`` instead. The folder goes last, so that a file
    in it never shadows the standard library or an installed package that a command
    imports later."""
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _report(exc: BaseException, line: str) -> None:
    if STATE.debug:
        traceback.print_exception(exc)
    err.print(line, markup=False, highlight=False)


def _error_text(exc: ModelhostError) -> str:
    """``error: <message>``; input that breaks a signature lists every problem found,
    one per line, as the server's ``details`` do."""
    if isinstance(exc, NotFoundError) and exc.cli_message:
        return f"error: {exc.cli_message}"
    if isinstance(exc, SignatureViolationError) and len(exc.details) > 1:
        lines = [f"error: the input does not match the signature ({exc.total} problems):"]
        lines += [f"  {d.get('message', d)}" for d in exc.details]
        if exc.total > len(exc.details):
            lines.append(f"  ... and {exc.total - len(exc.details)} more")
        return "\n".join(lines)
    return f"error: {exc.message}"


def _is_validation_error(exc: Exception) -> TypeGuard[ValidationError]:
    # pydantic is imported only by the commands that need it; if it is not loaded, the
    # error cannot be one of its.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


def _first_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid value')}"

"""`import modelhost` and the CLI stay light: the ML and web stacks load on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pandas", "sklearn", "pandera", "fastapi", "onnxruntime", "skops")
# Never needed to list, show or move models (PRODUCT.md §2; issue: start-up time).
NOT_FOR_COMMANDS = (*HEAVY, "numpy", "scipy", "starlette", "uvicorn", "httpx", "alembic",
                    "yaml", "rich.markdown", "rich.traceback", "rich.progress", "pygments")
# `modelhost --help` needs Typer only: no database, no settings, no rich.
NOT_FOR_HELP = (*NOT_FOR_COMMANDS, "sqlalchemy", "pydantic", "pydantic_settings", "rich",
                "modelhost.client", "modelhost.config", "importlib.metadata")


def loaded_after(args: list[str], watch: tuple[str, ...], home: Path | None = None
                 ) -> tuple[int, list[str]]:
    """Run the CLI with ``args`` in a fresh interpreter; its exit code and which of
    ``watch`` it imported."""
    code = ("import json, sys\n"
            "from modelhost.cli import run\n"
            f"status = run({args!r})\n"
            f"print(json.dumps([status, [m for m in {watch!r} if m in sys.modules]]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
    if home is not None:
        env["MODELHOST_HOME"] = str(home)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120, env=env)
    status, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    return status, loaded


def test_importing_modelhost_and_its_cli_loads_no_heavy_library() -> None:
    code = ("import sys, modelhost, modelhost.cli; "
            f"print(','.join(sorted(m for m in {NOT_FOR_HELP!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == ""


def test_help_loads_typer_only() -> None:
    assert loaded_after(["--help"], NOT_FOR_HELP) == (0, [])
    # A group's help runs the root callback, whose options Typer converts with pydantic.
    assert loaded_after(["models", "--help"], (*NOT_FOR_COMMANDS, "sqlalchemy")) == (0, [])


@pytest.fixture(scope="module")
def registered_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelhost import Client
    from tests.fixtures_models import iris_example, iris_model

    home = tmp_path_factory.mktemp("cli-imports") / "home"
    with Client(home=home) as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
    return home


@pytest.mark.parametrize("args", [
    ["models", "list"],
    ["models", "list", "--json"],
    ["models", "show", "iris"],
    ["stage", "iris", "1.0.0", "staging"],
])
def test_registry_commands_load_no_ml_web_or_migration_stack(registered_home: Path,
                                                             args: list[str]) -> None:
    status, loaded = loaded_after(args, NOT_FOR_COMMANDS, home=registered_home)
    assert status == 0 and loaded == []


def test_a_fresh_home_is_still_migrated(tmp_path: Path) -> None:
    status, _ = loaded_after(["models", "list", "--json"], (), home=tmp_path / "new")
    assert status == 0 and (tmp_path / "new" / "modelhost.db").is_file()


def test_the_fast_schema_check_agrees_with_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from modelhost.store.database import _MIGRATIONS, head_revision

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    assert [head_revision()] == ScriptDirectory.from_config(config).get_heads()


def test_the_cli_default_tolerance_is_the_pipelines_one() -> None:
    from modelhost.cli.pipeline import DEFAULT_TOLERANCE
    from modelhost.pipelines.reproduce import DEFAULT_TOLERANCE as PIPELINES

    assert DEFAULT_TOLERANCE == PIPELINES


def test_lazy_names_still_resolve() -> None:
    import modelhost
    import modelhost.signature as signatures

    assert callable(modelhost.infer_signature)
    assert signatures.InputValidator.__name__ == "InputValidator"
    assert modelhost.Client.__name__ == "Client" and callable(modelhost.start_run)
    assert isinstance(modelhost.__version__, str)
    assert set(modelhost.__all__) <= set(dir(modelhost))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        modelhost.nope  # noqa: B018

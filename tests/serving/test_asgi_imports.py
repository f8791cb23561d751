"""A server worker reaches its app factory without the CLI, and starts listening before it
imports pandas or the ML libraries (they come with the first model load)."""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = """
import json, sys
from uvicorn.importer import import_from_string

factory = import_from_string("modelhost.asgi:app_factory")
heavy = ("typer", "rich", "modelhost.cli", "pandas", "sklearn", "skops", "onnxruntime")
print(json.dumps({"factory": factory.__qualname__,
                  "imported": [m for m in heavy if m in sys.modules]}))
"""


def test_the_worker_entry_point_imports_neither_the_cli_nor_pandas() -> None:
    child = subprocess.run([sys.executable, "-W", "error", "-c", _CHILD], capture_output=True,
                           text=True, timeout=120, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.splitlines()[-1])
    assert report == {"factory": "app_factory", "imported": []}


def test_the_serving_package_does_not_import_pandas() -> None:
    child = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "import sys, modelhost.serving, modelhost.asgi; "
         "print(sorted(m for m in ('pandas', 'sklearn') if m in sys.modules))"],
        capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == ["[]"]

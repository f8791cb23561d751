"""Assertions shared by the flavor tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def assert_no_path(message: str, *paths: Path) -> None:
    """An error message must not reveal where files live."""
    for path in paths:
        assert str(path) not in message
    assert re.search(r"(?<![\w.])/(tmp|home|work|root|var|usr)\b", message) is None, message


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def same(a: Any, b: Any) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


# Runs code in a fresh interpreter where ``modelhost`` is a bare package module, so that
# only the flavors package (and what it imports itself) is exercised, not the parent
# package's ``__init__``.
_BARE_PACKAGE = (
    "import importlib.util, sys, types\n"
    "_spec = importlib.util.find_spec('modelhost')\n"
    "_package = types.ModuleType('modelhost')\n"
    "_package.__path__ = list(_spec.submodule_search_locations)\n"
    "sys.modules['modelhost'] = _package\n"
)


def run_isolated(code: str, *, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a subprocess; importing any module in ``blocked`` fails there."""
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", _BARE_PACKAGE + block + code],
        capture_output=True, text=True, timeout=120, check=False,
    )

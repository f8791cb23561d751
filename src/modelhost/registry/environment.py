"""What a registration records about the code and environment that produced a model."""

from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = ("modelhost", "numpy", "pandas", "scikit-learn", "scipy", "skops",
                "onnx", "onnxruntime", "skl2onnx")


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that decide how a model loads and predicts."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def python_version() -> str:
    return platform.python_version()


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit checked out in ``cwd`` (or the current folder), or None outside git."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603  # fixed arguments, no shell
            [git, "rev-parse", "--verify", "HEAD"], cwd=cwd, capture_output=True,
            text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) in (40, 64) else None

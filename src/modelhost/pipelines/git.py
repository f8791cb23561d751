"""The few git facts pipelines need: the commit, uncommitted changes, a worktree.

Every call runs the ``git`` executable with fixed arguments and no shell, with a
timeout; outside a repository (or without git) the answers are None / False.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelhost.errors import InvalidInputError
from modelhost.registry import environment

_TIMEOUT_S = 60


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        return subprocess.run(  # noqa: S603  # fixed arguments, no shell
            [git, "-C", str(folder), *args], capture_output=True, text=True,
            timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``'s repository, or None outside git."""
    return environment.git_commit(cwd=folder)


def is_dirty(folder: Path) -> bool:
    """Whether tracked files under ``folder`` have uncommitted changes."""
    done = _git(folder, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return bool(done and done.returncode == 0 and done.stdout.strip())


def toplevel(folder: Path) -> Path | None:
    done = _git(folder, "rev-parse", "--show-toplevel")
    if done is None or done.returncode != 0 or not done.stdout.strip():
        return None
    return Path(done.stdout.strip()).resolve()


def has_commit(folder: Path, sha: str) -> bool:
    done = _git(folder, "cat-file", "-e", f"{sha}^{{commit}}")
    return bool(done and done.returncode == 0)


@contextmanager
def worktree(repo: Path, sha: str, dest: Path) -> Iterator[Path]:
    """Check ``sha`` out into a new, detached worktree at ``dest``; remove it afterwards.

    Raises:
        InvalidInputError: git refused (the message is git's first line).
    """
    done = _git(repo, "worktree", "add", "--detach", str(dest), sha)
    if done is None or done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git failed"])[-1] if done else \
            "git is not available"
        raise InvalidInputError(f"cannot check out commit {sha[:12]}: {reason}")
    try:
        yield dest
    finally:
        _git(repo, "worktree", "remove", "--force", str(dest))
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        _git(repo, "worktree", "prune")


__all__ = ["commit", "has_commit", "is_dirty", "toplevel", "worktree"]

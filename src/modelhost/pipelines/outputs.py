"""Step outputs persisted in the work dir, so a skipped step's outputs stay available.

A returned :class:`~pathlib.Path` inside the step's output folder is kept as that file or
folder; any other value is pickled. The work dir is a local cache like ``.dvc/cache``,
written by your own steps: each file's sha256 is in ``modelhost.lock`` and is checked
before the file is read back, so a changed or foreign file is never unpickled - the step
simply runs again.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path
from typing import Any

from modelhost.errors import InvalidInputError
from modelhost.pipelines.hashing import file_digest, tree_digest
from modelhost.pipelines.state import OutputRecord

PICKLE, PATH = "pickle", "path"


class OutputError(InvalidInputError):
    """A step returned something that does not match its declared outputs."""


def reset_folder(folder: Path) -> Path:
    """An empty folder for a step about to run (its previous outputs removed)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def save_output(name: str, value: Any, *, step: str, folder: Path,
                work_dir: Path) -> OutputRecord:
    """Persist output ``name`` of ``step`` into ``folder`` (the step's output folder).

    Raises:
        OutputError: a path outside the step's output folder, or a value that cannot be
            pickled.
    """
    if isinstance(value, Path):
        target = value.resolve()
        if not target.is_relative_to(folder.resolve()) or not target.exists():
            raise OutputError(
                f"step {step!r}: output {name!r} is a path that is not inside the step's "
                "output folder; write files into ctx.output_dir and return their paths")
        return OutputRecord(file=target.relative_to(work_dir.resolve()).as_posix(),
                            format=PATH, sha256=tree_digest(target))
    file = folder / f"{name}.pkl"
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # user objects may fail to pickle in many ways
        raise OutputError(f"step {step!r}: output {name!r} ({type(value).__name__}) cannot "
                          f"be saved: {type(exc).__name__}; return a picklable value or "
                          "write a file into ctx.output_dir and return its path") from exc
    file.write_bytes(data)
    return OutputRecord(file=file.relative_to(work_dir).as_posix(), format=PICKLE,
                        sha256=file_digest(file))


def output_intact(record: OutputRecord, work_dir: Path) -> bool:
    """Whether the output is still where the lock says, with the recorded content."""
    path = work_dir / record.file
    if not path.exists():
        return False
    digest = file_digest(path) if record.format == PICKLE else tree_digest(path)
    return digest == record.sha256


def load_output(record: OutputRecord, work_dir: Path) -> Any:
    """Read an output back; the bytes unpickled are checked against the sha256 the lock
    file recorded when this pipeline wrote them."""
    path = work_dir / record.file
    if record.format == PATH:
        return path
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise OutputError(f"the cached output {record.file!r} changed while it was read; "
                          "run again with --force")
    return pickle.loads(data)  # noqa: S301  # our own cache file, its sha256 checked above


__all__ = ["OutputError", "load_output", "output_intact", "reset_folder", "save_output"]

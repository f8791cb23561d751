"""The step cache: ``modelhost.lock`` next to ``modelhost.yaml``, like ``dvc.lock``.

One entry per step that last *succeeded*: the key it ran with (code hash, params hash,
input hashes) and what it produced (outputs with their sha256, metrics it logged, facts of
built-in steps such as the registered version). A step whose current key equals its entry,
and whose output files are still there with the recorded hashes, is skipped; a built-in
step whose results live in the store is skipped only if the store holds them too.

The file is YAML, sorted and free of machine paths (outputs are relative to the work dir),
and rewritten atomically after every successful step, so a pipeline that fails half-way
resumes from the failed step.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelhost.pipelines.errors import PipelineStateError

LOCK_SCHEMA = 1
_HEADER = ("# Written by 'modelhost pipeline run': what each step last ran with and produced."
           "\n# Steps whose code, params and inputs still match are skipped. Do not edit.\n")


@dataclass(frozen=True)
class StepKey:
    """What decides whether a step must run again."""

    code: str
    params: str
    inputs: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "params": self.params, "inputs": dict(sorted(
            self.inputs.items()))}


@dataclass(frozen=True)
class OutputRecord:
    """A persisted output: ``file`` relative to the work dir, its format and sha256."""

    file: str
    format: str  # "pickle" | "path"
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "sha256": self.sha256}


@dataclass(frozen=True)
class StepRecord:
    key: StepKey
    outputs: Mapping[str, OutputRecord] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""
    completed_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**self.key.to_dict(),
                "outputs": {k: v.to_dict() for k, v in sorted(self.outputs.items())},
                "metrics": dict(sorted(self.metrics.items())), "facts": dict(self.facts),
                "run_id": self.run_id, "completed_at": self.completed_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        return cls(
            key=StepKey(code=str(data["code"]), params=str(data["params"]),
                        inputs={str(k): str(v) for k, v in (data.get("inputs") or {}).items()}),
            outputs={str(k): OutputRecord(file=str(v["file"]), format=str(v["format"]),
                                          sha256=str(v["sha256"]))
                     for k, v in (data.get("outputs") or {}).items()},
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
            facts=dict(data.get("facts") or {}),
            run_id=str(data.get("run_id", "")), completed_at=str(data.get("completed_at", "")))


class LockFile:
    """The lock file of one pipeline. ``save=False`` keeps changes in memory only."""

    def __init__(self, path: Path, *, save: bool = True) -> None:
        self.path = path
        self._save = save
        self._steps: dict[str, StepRecord] = {}

    @classmethod
    def load(cls, path: Path, *, save: bool = True) -> LockFile:
        """Read ``path`` (a missing file is an empty lock).

        Raises:
            PipelineStateError: the file is not a lock file this version understands.
        """
        lock = cls(path, save=save)
        if not path.exists():
            return lock
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict) or data.get("schema") != LOCK_SCHEMA:
                raise PipelineStateError(path.name, f"expected 'schema: {LOCK_SCHEMA}'")
            steps = data.get("steps") or {}
            lock._steps = {str(name): StepRecord.from_dict(body)
                           for name, body in steps.items()}
        except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PipelineStateError(path.name, type(exc).__name__) from None
        return lock

    def get(self, step: str) -> StepRecord | None:
        return self._steps.get(step)

    def put(self, step: str, record: StepRecord) -> None:
        self._steps[step] = record
        self._write()

    def drop(self, step: str) -> None:
        if self._steps.pop(step, None) is not None:
            self._write()

    @property
    def steps(self) -> dict[str, StepRecord]:
        return dict(self._steps)

    def _write(self) -> None:
        if not self._save:
            return
        body = {"schema": LOCK_SCHEMA,
                "steps": {name: rec.to_dict() for name, rec in self._steps.items()}}
        text = _HEADER + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
        write_atomic(self.path, text)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


__all__ = ["LOCK_SCHEMA", "LockFile", "OutputRecord", "StepKey", "StepRecord",
           "write_atomic"]

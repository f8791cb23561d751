"""The pipeline's data inputs: versioned in the dataset store, then handed to steps.

Each entry of ``datasets:`` becomes one dataset version per run:

* with ``path``, the file or folder is added to the store (identical content is the
  same version, so an unchanged file keeps its version number);
* without it, ``version`` (a number, or ``latest``, the default) picks one already there;
* a retraining run (``--reason``) takes the newest version of every dataset, after adding
  the local file, so data added with ``modelhost data add`` is picked up;
* ``modelhost reproduce`` pins each dataset to the version the original run used.

Steps receive the version's files as written back from the store (sha256-verified), not
the working copy, so what a step reads is exactly what the run recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost.entities import DatasetVersion
from modelhost.errors import InvalidInputError, NotFoundError
from modelhost.tracking import Datasets


@dataclass(frozen=True)
class ResolvedDataset:
    name: str
    version: DatasetVersion
    path: Path  # the materialized file (or folder of files)
    source: str  # "file" (added from path), "store" or "pinned"
    created: bool = False  # this run added the version

    @property
    def ref(self) -> str:
        return self.version.ref

    def describe(self) -> str:
        how = {"file": "new version" if self.created else "unchanged",
               "store": "from the store", "pinned": "pinned"}[self.source]
        return f"{self.ref} ({self.version.n_rows:,} rows, {how})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version.version, "ref": self.ref,
                "digest": self.version.digest, "rows": self.version.n_rows,
                "source": self.source, "created": self.created,
                "description": self.describe()}


class DatasetInputError(InvalidInputError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"dataset {name!r}: {reason}")


def resolve_datasets(specs: Mapping[str, Any], datasets: Datasets, *, folder: Path,
                     newest: bool, pinned: Mapping[str, int], cache: Path
                     ) -> dict[str, ResolvedDataset]:
    """Version (or look up) every dataset of the spec and write its files under ``cache``.

    Args:
        specs: ``PipelineSpec.datasets``.
        folder: the spec's folder (dataset paths are relative to it).
        newest: a retraining run: use the newest version of every dataset.
        pinned: dataset name -> version to use whatever the spec says (reproduce).
    """
    resolved: dict[str, ResolvedDataset] = {}
    for name, spec in specs.items():
        created = False
        if name in pinned:
            dv, source = _lookup(datasets, name, pinned[name]), "pinned"
        elif spec.path is not None:
            local = folder / spec.path
            if not local.exists():
                raise DatasetInputError(name, f"no file or folder {spec.path!r} next to the "
                                              "spec; create it or fix 'path'")
            dv, created = datasets.add(local, name=name)
            source = "file"
            if newest:
                latest = datasets.get(name)
                if latest.version != dv.version:
                    dv, source, created = latest, "store", False
        else:
            wanted = None if newest or spec.version in (None, "latest") else int(spec.version)
            dv, source = _lookup(datasets, name, wanted), "store"
        resolved[name] = ResolvedDataset(name=name, version=dv, source=source, created=created,
                                         path=_materialize(datasets, dv, cache))
    return resolved


def _lookup(datasets: Datasets, name: str, version: int | None) -> DatasetVersion:
    try:
        return datasets.get(name, version)
    except NotFoundError:
        what = "has no versions yet" if version is None else f"has no version {version}"
        raise DatasetInputError(name, f"the dataset store {what}; add one with 'modelhost "
                                      f"data add FILE --name {name}' or give a 'path'") from None


def _materialize(datasets: Datasets, dv: DatasetVersion, cache: Path) -> Path:
    """The version's files under ``cache/DIGEST`` (written once, atomically, verified)."""
    dest = cache / dv.digest
    if not dest.exists():
        datasets.materialize(dv, dest)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    return files[0] if len(files) == 1 else dest


__all__ = ["DatasetInputError", "ResolvedDataset", "resolve_datasets"]

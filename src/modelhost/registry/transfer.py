"""Moving a model between registries: ``modelhost export`` and ``modelhost import``.

An export is a tar file that holds ``modelhost-export.json`` (each version's flavor,
signature, input example, metrics, params, tags, description, lineage as recorded, the
reference profile, and, for information, its stage and aliases), every blob of every
version's artifact under ``blobs/<sha256>``, and ``SHA256SUMS`` over all of them.

An import checks the whole archive before it writes anything: only those members,
regular files with safe names, every blob's content matching its name, every sum
matching, every version's tree complete. A version the target already has with the same
artifact is left as it is (importing twice is harmless); one it has with other content
is a conflict that stops the import before anything is written. New versions keep their
numbers and artifact hashes; they arrive without a stage or aliases (promote them in
the target), and their lineage names runs and datasets of the source registry.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelhost._utils import utcnow, validate_name
from modelhost.artifacts import ArtifactStore
from modelhost.entities import Lineage, ModelVersion, SemVer, Signature
from modelhost.errors import (
    ConflictError,
    FileNotFoundInputError,
    InvalidInputError,
    ModelNotFoundError,
    VersionExistsError,
    VersionNotFoundError,
)
from modelhost.flavors import get_flavor
from modelhost.store.models import ModelStore, NewVersion
from modelhost.store.profiles import NewReference, ProfileStore

__all__ = ["Exported", "Imported", "Transfer"]

FORMAT = "modelhost-export"
FORMAT_VERSION = 1
_INDEX = "modelhost-export.json"
_SUMS = "SHA256SUMS"
_BLOB = re.compile(r"^blobs/([0-9a-f]{64})$")
_MAX_INDEX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Exported:
    path: Path
    model: str
    versions: list[str]
    blobs: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "model": self.model, "versions": self.versions,
                "blobs": self.blobs, "bytes": self.bytes}


@dataclass(frozen=True)
class Imported:
    model: str
    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "imported": self.imported, "unchanged": self.unchanged}


class Transfer:
    def __init__(self, models: ModelStore, artifacts: ArtifactStore,
                 profiles: ProfileStore) -> None:
        self._models = models
        self._artifacts = artifacts
        self._profiles = profiles

    # --- export -----------------------------------------------------------------------

    def export(self, name: str, out: Path, versions: Sequence[str] | None = None
               ) -> Exported:
        """Write ``name``'s versions (all, or those listed) to the new file ``out``.
        Raises ModelNotFoundError, VersionNotFoundError, ConflictError (``out``
        exists), and what reading the artifacts raises (a damaged blob is never
        exported)."""
        out = out.expanduser()
        if out.exists() or out.is_symlink():
            raise ConflictError(f"{out} already exists; export to a new file")
        if not out.parent.is_dir():
            raise FileNotFoundInputError(str(out.parent))
        chosen = self._chosen(name, versions)
        records = [self._record(mv) for mv in chosen]
        blobs: dict[str, int] = {}
        for mv in chosen:
            for digest in sorted(self._artifacts.tree_blobs(mv.artifact_digest)):
                blobs.setdefault(digest, 0)
        index = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                            "model": name, "exported_at": utcnow().isoformat(),
                            "versions": records, "blobs": sorted(blobs)},
                           indent=1, sort_keys=True).encode()
        partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
        sums = [f"{hashlib.sha256(index).hexdigest()}  {_INDEX}"]
        total = 0
        try:
            with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
                _add(tar, _INDEX, index)
                for digest in sorted(blobs):
                    data = self._artifacts.get_bytes(digest)  # verified against its hash
                    _add(tar, f"blobs/{digest}", data)
                    sums.append(f"{digest}  blobs/{digest}")
                    total += len(data)
                _add(tar, _SUMS, ("\n".join(sums) + "\n").encode())
            with partial.open("rb+") as handle:
                os.fsync(handle.fileno())
            os.link(partial, out)  # never overwrites a file made meanwhile
        except FileExistsError:
            raise ConflictError(f"{out} already exists; export to a new file") from None
        finally:
            partial.unlink(missing_ok=True)
        return Exported(path=out.resolve(), model=name,
                        versions=[mv.version for mv in chosen], blobs=len(blobs),
                        bytes=total)

    def _chosen(self, name: str, versions: Sequence[str] | None) -> list[ModelVersion]:
        every = self._models.list_versions(name)  # ModelNotFoundError
        if not versions:
            return every
        by_number = {mv.version: mv for mv in every}
        missing = [v for v in versions if v not in by_number]
        if missing:
            raise VersionNotFoundError(name, missing[0])
        return [by_number[v] for v in dict.fromkeys(versions)]

    def _record(self, mv: ModelVersion) -> dict[str, Any]:
        reference = self._profiles.reference(mv.model, mv.version)
        return {
            "version": mv.version, "flavor": mv.flavor, "flavor_meta": dict(mv.flavor_meta),
            "artifact_digest": mv.artifact_digest, "artifact_size": mv.artifact_size,
            "signature": mv.signature.to_dict() if mv.signature else None,
            "input_example": mv.input_example, "metrics": dict(mv.metrics),
            "params": dict(mv.params), "tags": dict(mv.tags),
            "description": mv.description, "lineage": mv.lineage.to_dict(),
            "reference": None if reference is None else {
                "profile": reference.profile, "digest": reference.digest,
                "source": reference.source, "rows": reference.rows},
            # For information: the target decides its own stages and aliases.
            "stage": mv.stage.value, "aliases": list(mv.aliases),
            "created_at": mv.created_at.isoformat(),
        }

    # --- import -----------------------------------------------------------------------

    def import_archive(self, path: Path) -> Imported:
        """Recreate the archive's versions here (see the module doc). Raises
        InvalidInputError (not an export, damaged or changed), ConflictError (a version
        here with other content), FileNotFoundInputError."""
        path = path.expanduser()
        if not path.is_file():
            raise FileNotFoundInputError(str(path))
        with tempfile.TemporaryDirectory(prefix="modelhost-import-") as tmp:
            index, blob_files = _unpack_checked(path, Path(tmp))
            model, records = _parse_index(index, set(blob_files))
            for record in records:  # every version's tree is whole, before any write
                _check_tree(record["artifact_digest"], blob_files)
            news = {r["version"]: _new_version(model, r) for r in records}
            plan = self._plan(model, records)
            if not plan:
                return Imported(model=model, unchanged=[r["version"] for r in records])
            for digest, file in blob_files.items():
                stored = self._artifacts.put_file(file)
                if stored.digest != digest:  # checked on unpacking; never stored wrong
                    raise InvalidInputError(f"blob {digest[:12]} changed while importing")
            imported = []
            for record in plan:
                self._artifacts.tree_blobs(record["artifact_digest"])  # stored whole
                number = SemVer.parse(record["version"])
                try:
                    self._models.create_version(news[record["version"]],
                                                functools.partial(_exactly, number),
                                                imported_from=path.name)
                except VersionExistsError:
                    raise ConflictError(
                        f"{model} {record['version']} was registered here while importing; "
                        "import again to see whether it is the same") from None
                imported.append(record["version"])
        return Imported(model=model, imported=imported,
                        unchanged=[r["version"] for r in records
                                   if r["version"] not in imported])

    def _plan(self, model: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records to create; a version here with other content stops everything."""
        try:
            here = {mv.version: mv for mv in self._models.list_versions(model)}
        except ModelNotFoundError:  # a model this registry does not have yet
            here = {}
        plan = []
        for record in records:
            existing = here.get(record["version"])
            if existing is None:
                plan.append(record)
            elif existing.artifact_digest != record["artifact_digest"] \
                    or existing.flavor != record["flavor"]:
                raise ConflictError(
                    f"{model} {record['version']} exists here with other content (artifact "
                    f"{existing.artifact_digest[:12]}, the archive's "
                    f"{record['artifact_digest'][:12]}); nothing was imported")
        return plan


def _exactly(number: SemVer, latest: ModelVersion | None) -> SemVer:
    return number  # the archive's number, whatever the latest here


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # the same versions export to the same bytes but for the date inside
    tar.addfile(info, io.BytesIO(data))


def _damaged(reason: str) -> InvalidInputError:
    return InvalidInputError(f"not a usable modelhost export: {reason}; nothing was "
                             "imported")


def _unpack_checked(path: Path, folder: Path) -> tuple[bytes, dict[str, Path]]:
    """The index and the blobs' files, after checking every member: regular files with
    the expected names only, each blob's content its name, and every sum."""
    blobs: dict[str, Path] = {}
    index: bytes | None = None
    sums: bytes | None = None
    hashes: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isreg():
                    raise _damaged(f"{member.name!r} is not a regular file")
                name = member.name
                match = _BLOB.match(name)
                if name not in (_INDEX, _SUMS) and match is None:
                    raise _damaged(f"unexpected member {name!r}")
                if name in hashes:
                    raise _damaged(f"{name!r} appears twice")
                source = tar.extractfile(member)
                if source is None:
                    raise _damaged(f"{name!r} cannot be read")
                digest = hashlib.sha256()
                if match is not None:
                    target = folder / match.group(1)
                    with target.open("wb") as sink:
                        while chunk := source.read(1 << 20):
                            digest.update(chunk)
                            sink.write(chunk)
                    if digest.hexdigest() != match.group(1):
                        raise _damaged(f"{name} does not match its sha256")
                    blobs[match.group(1)] = target
                else:
                    if member.size > _MAX_INDEX_BYTES:
                        raise _damaged(f"{name} is too large")
                    data = source.read()
                    digest.update(data)
                    if name == _INDEX:
                        index = data
                    else:
                        sums = data
                hashes[name] = digest.hexdigest()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _damaged(f"the file is not a whole tar archive ({type(exc).__name__})") from None
    if index is None or sums is None:
        raise _damaged(f"{_INDEX} or {_SUMS} is missing")
    listed: dict[str, str] = {}
    for line in sums.decode(errors="replace").splitlines():
        sha, _, name = line.partition("  ")
        listed[name] = sha
    if listed != {n: h for n, h in hashes.items() if n != _SUMS}:
        raise _damaged(f"{_SUMS} does not match the archive's contents")
    return index, blobs


def _parse_index(index: bytes, blobs: set[str]) -> tuple[str, list[dict[str, Any]]]:
    try:
        data = json.loads(index)
    except ValueError:
        raise _damaged(f"{_INDEX} is not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _damaged("it is not a modelhost export")
    if data.get("format_version") != FORMAT_VERSION:
        raise _damaged(f"format version {data.get('format_version')!r}; this modelhost "
                       f"reads version {FORMAT_VERSION}")
    model, records = data.get("model"), data.get("versions")
    if not isinstance(model, str) or not isinstance(records, list) or not records:
        raise _damaged("it names no model or no versions")
    validate_name(model)  # InvalidNameError
    if set(data.get("blobs") or ()) != blobs:
        raise _damaged("its blobs are not the ones it lists")
    for record in records:
        if not isinstance(record, dict) or record.get("artifact_digest") not in blobs:
            raise _damaged("a version's artifact is not in it")
        if not isinstance(record.get("flavor"), str):
            raise _damaged("a version has no flavor")
        get_flavor(record["flavor"])  # UnknownFlavorError: it could never load here
        SemVer.parse(str(record.get("version")))  # InvalidVersionError
    return model, records


def _check_tree(digest: str, blobs: dict[str, Path]) -> None:
    """The tree's manifest lists only files the archive holds."""
    try:
        document = json.loads(blobs[digest].read_bytes())
        listed = {entry["sha256"] for entry in document["files"].values()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _damaged(f"the artifact {digest[:12]} is not a tree") from None
    if not listed <= set(blobs):
        raise _damaged(f"the artifact {digest[:12]} lacks some of its files")


def _new_version(model: str, record: dict[str, Any]) -> NewVersion:
    try:
        return _version_of(model, record)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _damaged(f"version {record.get('version')} is not described as an export "
                       "describes it") from None


def _version_of(model: str, record: dict[str, Any]) -> NewVersion:
    lineage = record.get("lineage") or {}
    reference = record.get("reference")
    return NewVersion(
        model=model, flavor=record["flavor"], flavor_meta=record.get("flavor_meta") or {},
        artifact_digest=record["artifact_digest"],
        artifact_size=int(record.get("artifact_size") or 0),
        signature=Signature.from_dict(record["signature"]) if record.get("signature")
        else None,
        input_example=record.get("input_example"),
        lineage=Lineage.from_dict(lineage),
        metrics=record.get("metrics") or {}, params=record.get("params") or {},
        tags=record.get("tags") or {}, description=record.get("description") or "",
        reference=None if not reference else NewReference(
            profile=reference["profile"], digest=reference["digest"],
            source=reference["source"], rows=int(reference["rows"])))

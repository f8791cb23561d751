"""Garbage collection of the artifact store: blobs that nothing refers to any more.

Blobs are written before the row that refers to them is committed (a registration stores
its files, then commits its version), and a failed write may leave blobs behind. So a
blob is removed only when it is **older than the grace period** (a write in flight is
young: nothing being written is ever removed) **and unreferenced**, checked in that
order for each blob, with the references read after its age: a version committed in
between is seen. A blob stored again (a byte-identical file registered anew) is touched,
which restarts its grace period (a local file's modification time is set; an object
store's object older than a minute is written again, as it keeps no settable time).
Referenced trees keep their manifest and every file blob.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from modelhost.artifacts.base import ArtifactStore
from modelhost.errors import ArtifactMissingError, InvalidInputError

__all__ = ["Collected", "collect_garbage"]


@dataclass
class Collected:
    """What a collection found: blobs stored, in use, too young to judge, and removed
    (or that would be, on a dry run)."""

    stored: int = 0
    in_use: int = 0
    young: int = 0
    removed: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"stored": self.stored, "in_use": self.in_use, "young": self.young,
                "removed": len(self.removed), "dry_run": self.dry_run,
                "digests": list(self.removed)}


class _References:
    """The blobs the metadata's trees consist of; each manifest is read once, however
    often the references are read again."""

    def __init__(self, store: ArtifactStore, in_use: Callable[[], Iterable[str]]) -> None:
        self._store = store
        self._in_use = in_use
        self._trees: dict[str, set[str]] = {}

    def read(self) -> set[str]:
        blobs: set[str] = set()
        for manifest in self._in_use():
            if manifest not in self._trees:
                try:
                    self._trees[manifest] = self._store.tree_blobs(manifest)
                except (ArtifactMissingError, InvalidInputError):
                    # Missing, or not a tree: it counts as itself, never read past.
                    self._trees[manifest] = {manifest}
            blobs |= self._trees[manifest]
        return blobs


def collect_garbage(store: ArtifactStore, in_use: Callable[[], Iterable[str]], *,
                    grace: dt.timedelta, dry_run: bool = False,
                    clock: Callable[[], float] = time.time) -> Collected:
    """Remove (or, with ``dry_run``, list) the blobs older than ``grace`` that no tree of
    ``in_use()`` (the manifests the metadata refers to, read afresh) contains."""
    result = Collected(dry_run=dry_run)
    references = _References(store, in_use)
    digests = list(store.iter_digests())
    result.stored = len(digests)
    referenced = references.read()
    for digest in digests:
        if digest in referenced:
            result.in_use += 1
            continue
        modified = store.modified(digest)
        if modified is None or clock() - modified < grace.total_seconds():
            result.young += 1
            continue
        # Old and unreferenced when listed: look again now, since a version may have
        # been committed meanwhile with this very blob.
        referenced = references.read()
        if digest in referenced:
            result.in_use += 1
            continue
        if not dry_run:
            store.delete(digest)
        result.removed.append(digest)
    return result

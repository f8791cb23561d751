"""Applying feature definitions: each change becomes a new version in the registry's
database (with its audit entry); applying the same definitions again changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost.errors import FileNotFoundInputError, NotFoundError
from modelhost.features.definitions import FeatureRepo, canonical, parse_repo
from modelhost.store.features import FeatureRepoStore, StoredRepo


@dataclass(frozen=True)
class AppliedRepo:
    version: int
    changed: bool  # False: the definitions were those of the latest version already
    repo: FeatureRepo
    digest: str
    applied_by: str
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "changed": self.changed, "digest": self.digest,
                "applied_by": self.applied_by, "created_at": self.created_at.isoformat(),
                "entities": sorted(self.repo.entities),
                "feature_views": sorted(self.repo.views),
                "feature_services": sorted(self.repo.services)}


class NoFeaturesError(NotFoundError):
    def __init__(self, version: int | None = None) -> None:
        super().__init__("no feature definitions have been applied yet; run 'modelhost "
                         "features apply FILE'" if version is None else
                         f"no version {version} of the feature definitions")


class Features:
    def __init__(self, store: FeatureRepoStore) -> None:
        self._store = store

    def apply(self, definitions: str | Path | Mapping[str, Any] | FeatureRepo) -> AppliedRepo:
        """Check ``definitions`` (YAML text, a YAML file, a mapping or a repository) as
        a whole and store them as a new version if they differ from the latest."""
        if isinstance(definitions, Path):
            if not definitions.is_file():
                raise FileNotFoundInputError(str(definitions))
            definitions = definitions.read_text(encoding="utf-8")
        repo = definitions if isinstance(definitions, FeatureRepo) else parse_repo(definitions)
        text, digest = canonical(repo)
        stored, changed = self._store.apply(text, digest)
        return _applied(stored, changed)

    def current(self, version: int | None = None) -> AppliedRepo:
        """The latest version of the definitions (or ``version``)."""
        stored = self._store.latest() if version is None else self._store.get(version)
        if stored is None:
            raise NoFeaturesError(version)
        return _applied(stored, False)


def _applied(stored: StoredRepo, changed: bool) -> AppliedRepo:
    return AppliedRepo(stored.version, changed, parse_repo(json.loads(stored.definitions)),
                       stored.digest, stored.applied_by, stored.created_at)

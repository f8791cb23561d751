"""Applying feature definitions: each change becomes a new version in the registry's
database (with its audit entry); applying the same definitions again changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost.errors import FileNotFoundInputError, InvalidInputError, NotFoundError
from modelhost.features.definitions import FeatureRepo, canonical, parse_repo
from modelhost.features.lookup import OnlineLookup, OnlineRow
from modelhost.features.materialize import Materialized, Progress, materialize
from modelhost.features.online import Freshness, OnlineStore
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
    """The definitions' versions, materialization and online lookups. The online store
    opens on first use (``open_online``) and closes with :meth:`close`."""

    def __init__(self, store: FeatureRepoStore,
                 open_online: Callable[[], OnlineStore] | None = None) -> None:
        self._store = store
        self._open_online = open_online
        self._online: OnlineStore | None = None

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            if self._open_online is None:
                raise InvalidInputError("no online store is configured")
            self._online = self._open_online()
        return self._online

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None

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


    def materialize(self, *, views: Sequence[str] = (), start: dt.datetime | None = None,
                    end: dt.datetime | None = None,
                    progress: Progress | None = None) -> list[Materialized]:
        """Load the latest value per entity key of ``views`` (all when empty) over
        ``(start, end]`` into the online store; see :mod:`modelhost.features.materialize`."""
        applied = self.current()
        done = materialize(applied.repo, self.online, views=views, start=start, end=end,
                           progress=progress)
        self._store.audit_materialized(applied.version, [m.to_dict() for m in done])
        return done

    def freshness(self) -> dict[str, Freshness]:
        """Each view's last materialization."""
        return self.online.freshness()

    def get_online(self, service: str, entities: Sequence[Mapping[str, Any]], *,
                   version: int | None = None, now: dt.datetime | None = None
                   ) -> list[OnlineRow]:
        """The values of ``service``'s features for each entity (its join keys), as
        serving finds them: with the state of each (fresh, stale, missing)."""
        lookup = OnlineLookup(self.current(version).repo, service)
        return lookup.read(self.online, entities, now=now)


def _applied(stored: StoredRepo, changed: bool) -> AppliedRepo:
    return AppliedRepo(stored.version, changed, parse_repo(json.loads(stored.definitions)),
                       stored.digest, stored.applied_by, stored.created_at)

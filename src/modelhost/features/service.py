"""Applying feature definitions: each change becomes a new version in the registry's
database (with its audit entry); applying the same definitions again changes nothing."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost.entities import Signature
from modelhost.errors import (
    ConflictError,
    FileNotFoundInputError,
    InvalidInputError,
    NotFoundError,
)
from modelhost.features.definitions import (
    FeatureRepo,
    Source,
    canonical,
    names_of,
    parse_repo,
)
from modelhost.features.lookup import OnlineLookup, OnlineRow
from modelhost.features.materialize import Materialized, Progress, materialize
from modelhost.features.online import Freshness, OnlineStore
from modelhost.features.sources import read_source, read_view
from modelhost.store.features import FeatureRepoStore, StoredRepo


@dataclass(frozen=True)
class AppliedRepo:
    version: int
    changed: bool  # False: the definitions were those of the latest version already
    repo: FeatureRepo
    digest: str
    applied_by: str
    created_at: dt.datetime
    # What a Feast repository held that has no counterpart here (see feast_repo.py).
    left_out: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "changed": self.changed, "digest": self.digest,
                "applied_by": self.applied_by, "created_at": self.created_at.isoformat(),
                "left_out": list(self.left_out),
                "entities": sorted(self.repo.entities),
                "feature_views": sorted(self.repo.views),
                "feature_services": sorted(self.repo.services)}


@dataclass(frozen=True)
class BoundVersion:
    model: str
    version: str
    stage: str
    service: str
    features_version: int


class FeatureChangeError(ConflictError):
    def __init__(self, bound: BoundVersion, what: str) -> None:
        super().__init__(
            f"the feature service {bound.service!r} serves {bound.model} {bound.version} "
            f"({bound.stage}), and this change {what}; keep it as it is and define the new "
            "features in a new service, register the model's next version with that one, "
            "then retire this service")


def _served(repo: FeatureRepo, service: str) -> tuple[Any, ...]:
    """What a service gives a model: each feature's view, name, type, default and
    policy, and each view's join keys, TTL and transformation."""
    return tuple((view.name, repo.join_keys(view), view.ttl, view.on_missing,
                  view.transformation, feature.name, feature.dtype, feature.default)
                 for view, feature in repo.service_features(service))


class NoFeaturesError(NotFoundError):
    def __init__(self, version: int | None = None) -> None:
        super().__init__("no feature definitions have been applied yet; run 'modelhost "
                         "features apply FILE'" if version is None else
                         f"no version {version} of the feature definitions")


class Features:
    """The definitions' versions, materialization and online lookups. The online store
    opens on first use (``open_online``) and closes with :meth:`close`."""

    def __init__(self, store: FeatureRepoStore,
                 open_online: Callable[[], OnlineStore] | None = None,
                 bound: Callable[[], Sequence[BoundVersion]] | None = None,
                 offline_db: str | None = None) -> None:
        """``bound``: the staged and production model versions bound to a service (a
        change that would break one of them is refused). ``offline_db``: the SQLAlchemy
        URL that table sources are read from."""
        self._store = store
        self.offline_db = offline_db
        self._open_online = open_online
        self._online: OnlineStore | None = None
        self.bound = bound

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

    async def aclose(self) -> None:
        """:meth:`close` from the event loop the online store was read in."""
        if self._online is not None:
            await self._online.aclose()
            self._online = None

    def apply(self, definitions: str | Path | Mapping[str, Any] | FeatureRepo) -> AppliedRepo:
        """Check ``definitions`` (YAML text, a YAML file, a mapping or a repository) as
        a whole and store them as a new version if they differ from the latest."""
        left_out: list[str] = []
        if isinstance(definitions, Path):
            if definitions.is_dir():  # a Feast repository (see feast_repo.py)
                from modelhost.features.feast_repo import read_feast_repo

                imported = read_feast_repo(definitions)
                definitions, left_out = imported.repo, imported.skipped
            elif not definitions.is_file():
                raise FileNotFoundInputError(str(definitions))
            else:
                definitions = definitions.read_text(encoding="utf-8")
        repo = definitions if isinstance(definitions, FeatureRepo) else parse_repo(definitions)
        self._check_bound(repo)
        text, digest = canonical(repo)
        stored, changed = self._store.apply(text, digest)
        return _applied(stored, changed, tuple(left_out))

    def _check_bound(self, repo: FeatureRepo) -> None:
        """Refuse definitions that would serve a bound version other features than it was
        trained with (a feature or key gone, renamed or of another type)."""
        if self.bound is None:
            return
        for bound in self.bound():
            trained = _served(self.current(bound.features_version).repo, bound.service)
            offered = _served(repo, bound.service) if bound.service in repo.services else None
            if offered != trained:
                raise FeatureChangeError(bound, "drops it" if offered is None else
                                         "changes what it gives (features, types, keys, "
                                         "TTL or policy)")

    def current(self, version: int | None = None) -> AppliedRepo:
        """The latest version of the definitions (or ``version``)."""
        stored = self._store.latest() if version is None else self._store.get(version)
        if stored is None:
            raise NoFeaturesError(version)
        return _applied(stored, False)


    def bind(self, service: str, version: int | None, signature: Signature | None) -> int:
        """Check that a model with ``signature`` can be served from ``service`` (of the
        definitions' ``version``, the latest by default): the service exists and each
        of its features is an input of the signature. Returns the version."""
        applied = self.current(version)
        names = names_of(applied.repo.service_features(service))
        if signature is None or signature.is_tensor:
            raise InvalidInputError(f"a model bound to the feature service {service!r} needs "
                                    "a signature of columns (give an input example)")
        inputs = {c.name for c in signature.columns}
        missing = [n for n in names if n not in inputs]
        if missing:
            raise InvalidInputError(
                f"the feature service {service!r} (definitions version {applied.version}) "
                f"gives {', '.join(missing)}, which the model's signature does not take; "
                "train it on the service's training frame")
        return applied.version

    def materialize(self, *, views: Sequence[str] = (), start: dt.datetime | None = None,
                    end: dt.datetime | None = None,
                    progress: Progress | None = None) -> list[Materialized]:
        """Load the latest value per entity key of ``views`` (all when empty) over
        ``(start, end]`` into the online store; see :mod:`modelhost.features.materialize`."""
        applied = self.current()
        done = materialize(applied.repo, self.online, views=views, start=start, end=end,
                           progress=progress, read=functools.partial(
                               read_view, database=self.offline_db))
        self._store.audit_materialized(applied.version, [m.to_dict() for m in done])
        return done

    def read_source(self, source: Source) -> Any:
        """A view's source as a DataFrame (``training_frame``'s ``read_source``): its
        files, or its table of the offline database."""
        return read_source(source, database=self.offline_db)

    def freshness(self) -> dict[str, Freshness]:
        """Each view's last materialization."""
        return self.online.freshness()

    def get_online(self, service: str, entities: Sequence[Mapping[str, Any]], *,
                   version: int | None = None, now: dt.datetime | None = None
                   ) -> list[OnlineRow]:
        """The values of ``service``'s features for each entity (its join keys), as
        serving finds them: with the state of each (fresh, stale, missing)."""
        lookup = OnlineLookup(self.current(version).repo, service)
        return lookup.transform(lookup.read(self.online, entities, now=now))


def _applied(stored: StoredRepo, changed: bool, left_out: tuple[str, ...] = ()
             ) -> AppliedRepo:
    return AppliedRepo(stored.version, changed, parse_repo(json.loads(stored.definitions)),
                       stored.digest, stored.applied_by, stored.created_at, left_out)

"""Persistence of models, versions, aliases, tags and stage history.

Every method runs in its own transaction and returns entities. Invariants that races
could break (unique semver per model, one production version) are enforced by the
database; this module turns the resulting integrity errors into modelhost errors.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, String, and_, cast, func, literal, null, select, text, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelhost._utils import as_utc, utcnow
from modelhost.entities import (
    Lineage,
    Model,
    ModelVersion,
    RoutedModel,
    RoutingState,
    SemVer,
    Signature,
    Stage,
    StageChange,
    Strategy,
)
from modelhost.errors import (
    AliasNotFoundError,
    ConflictError,
    DatasetNotFoundError,
    IllegalTransitionError,
    ModelNotFoundError,
    NothingToRollBackError,
    RunNotFoundError,
    VersionExistsError,
    VersionNotFoundError,
)
from modelhost.store import audit
from modelhost.store.database import Database, WriteConflictError
from modelhost.store.deployment_rows import RUNNING, routed_deployments
from modelhost.store.profiles import NewReference, new_reference_row
from modelhost.store.schema import (
    AliasRow,
    DatasetRow,
    DatasetVersionRow,
    DeploymentRow,
    ModelRow,
    ModelTagRow,
    ModelVersionRow,
    RoutingRevisionRow,
    RunRow,
    StageHistoryRow,
    VersionDatasetRow,
    VersionTagRow,
)


class ConcurrentVersionError(ConflictError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a concurrent registration of {name!r} took the same version "
                         "number; try again")


@dataclass(frozen=True)
class NewVersion:
    """Everything a registration writes, except the version number itself."""

    model: str
    flavor: str
    flavor_meta: Mapping[str, Any]
    artifact_digest: str
    artifact_size: int
    signature: Signature | None
    input_example: Any
    lineage: Lineage
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    reference: NewReference | None = None  # its training data's profile, when known


_ROLLBACK = "rollback: "  # the reason of a promotion made by a rollback starts so

# Decides the version number from the current latest version, inside the transaction
# that inserts it, so that concurrent registrations see each other.
ChooseVersion = Callable[[ModelVersion | None], SemVer]


class ModelStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        return self._db

    # --- reads ----------------------------------------------------------------------

    def list_models(self) -> list[Model]:
        """Every model, in four reads whatever their number (not four per model), of the
        columns a :class:`Model` needs only."""
        m, v = ModelRow, ModelVersionRow
        with self._db.session() as s:
            rows = s.execute(select(m.id, m.name, m.description, m.created_at, m.updated_at)
                             .order_by(m.name)).all()
            tags: dict[int, dict[str, str]] = defaultdict(dict)
            for model_id, key, value in s.execute(
                    select(ModelTagRow.model_id, ModelTagRow.key, ModelTagRow.value)
                    .order_by(ModelTagRow.key)):
                tags[model_id][key] = value
            aliases: dict[int, dict[str, str]] = defaultdict(dict)
            for model_id, alias, major, minor, patch in s.execute(
                    select(AliasRow.model_id, AliasRow.alias, v.major, v.minor, v.patch)
                    .join(v, AliasRow.version_id == v.id).order_by(AliasRow.alias)):
                aliases[model_id][alias] = f"{major}.{minor}.{patch}"
            # Each model's latest version (the highest number) and production version.
            rank = func.row_number().over(
                partition_by=v.model_id,
                order_by=(v.major.desc(), v.minor.desc(), v.patch.desc())).label("n")
            ranked = select(v.model_id, v.major, v.minor, v.patch, v.stage, rank).subquery()
            latest: dict[int, str] = {}
            production: dict[int, str] = {}
            for model_id, major, minor, patch, stage, n in s.execute(
                    select(ranked).where(
                        (ranked.c.n == 1) | (ranked.c.stage == Stage.PRODUCTION.value))):
                number = f"{major}.{minor}.{patch}"
                if n == 1:
                    latest[model_id] = number
                if stage == Stage.PRODUCTION.value:
                    production[model_id] = number
            return [Model(name=name, description=description, tags=tags.get(model_id, {}),
                          aliases=aliases.get(model_id, {}),
                          latest_version=latest.get(model_id),
                          production_version=production.get(model_id),
                          created_at=as_utc(created), updated_at=as_utc(updated))
                    for model_id, name, description, created, updated in rows]

    def get_model(self, name: str) -> Model:
        with self._db.session() as s:
            return self._model(s, self._model_row(s, name))

    def list_versions(self, name: str, *, newest: int | None = None) -> list[ModelVersion]:
        """The model's versions, oldest first; only the ``newest`` ones when given."""
        v = ModelVersionRow
        with self._db.session() as s:
            model = self._model_row(s, name)
            if newest is None:
                rows = list(s.scalars(select(v).where(v.model_id == model.id)
                                      .order_by(v.major, v.minor, v.patch)))
            else:
                rows = list(reversed(s.scalars(
                    select(v).where(v.model_id == model.id)
                    .order_by(v.major.desc(), v.minor.desc(), v.patch.desc())
                    .limit(max(newest, 0))).all()))
            # Tags and aliases of all the versions in one read each (not two per version).
            tagged = select(VersionTagRow).join(v, VersionTagRow.version_id == v.id).where(
                v.model_id == model.id)
            if newest is not None:  # a few ids: the window's
                tagged = tagged.where(v.id.in_([row.id for row in rows]))
            tags: dict[int, dict[str, str]] = defaultdict(dict)
            for t in s.scalars(tagged.order_by(VersionTagRow.key)):
                tags[t.version_id][t.key] = t.value
            aliases: dict[int, list[str]] = defaultdict(list)
            for version_id, alias in s.execute(
                    select(AliasRow.version_id, AliasRow.alias)
                    .where(AliasRow.model_id == model.id).order_by(AliasRow.alias)):
                aliases[version_id].append(alias)
            return [self._version(s, model, row, tags=tags.get(row.id, {}),
                                  aliases=tuple(aliases.get(row.id, ()))) for row in rows]

    def count_versions(self, name: str) -> int:
        with self._db.session() as s:
            model = self._model_row(s, name)
            return int(s.scalar(select(func.count()).select_from(ModelVersionRow)
                                .where(ModelVersionRow.model_id == model.id)) or 0)

    def get_version(self, name: str, version: str) -> ModelVersion:
        with self._db.session() as s:
            model = self._model_row(s, name)
            return self._version(s, model, self._version_row(s, model, version))

    def resolve(self, name: str, ref: str) -> ModelVersion:
        """A version by number (``1.2.0``), alias, ``latest``, or stage (``@production``)."""
        with self._db.session() as s:
            model = self._model_row(s, name)
            row = self._resolve_row(s, model, ref)
            return self._version(s, model, row)

    def latest_version(self, name: str) -> ModelVersion | None:
        with self._db.session() as s:
            model = s.scalar(select(ModelRow).where(ModelRow.name == name))
            if model is None:
                return None
            row = self._latest_row(s, model.id)
            return self._version(s, model, row) if row else None

    def stage_history(self, name: str) -> list[StageChange]:
        with self._db.session() as s:
            model = self._model_row(s, name)
            q = (select(StageHistoryRow, ModelVersionRow)
                 .join(ModelVersionRow, StageHistoryRow.version_id == ModelVersionRow.id)
                 .where(ModelVersionRow.model_id == model.id).order_by(StageHistoryRow.id))
            return [StageChange(model=name, version=_semver(v), from_stage=Stage(h.from_stage),
                                to_stage=Stage(h.to_stage), reason=h.reason, at=as_utc(h.at))
                    for h, v in s.execute(q).all()]

    def routing_revision(self) -> int:
        """The routing revision: it grows with every change of what is served."""
        with self._db.session() as s:
            return s.scalar(select(RoutingRevisionRow.revision)
                            .where(RoutingRevisionRow.id == 1)) or 0

    def routing_state(self) -> RoutingState:
        """Every model's production version, aliases and tags, and the routing revision
        they belong to, read in one statement (one snapshot) whatever the number of models.
        """
        revision = 0
        production: dict[str, str | None] = {}
        aliases: dict[str, dict[str, str]] = {}
        tags: dict[str, dict[str, str]] = {}
        with self._db.session() as s:
            for kind, name, key, value, major, minor, patch in s.execute(_ROUTING_STATE):
                if kind == "r":
                    revision = int(major)
                elif kind == "p":
                    production[name] = None if major is None else f"{major}.{minor}.{patch}"
                elif kind == "a":
                    aliases.setdefault(name, {})[key] = f"{major}.{minor}.{patch}"
                else:
                    tags.setdefault(name, {})[key] = value
            # A deployment changes with the revision it bumps; read after it, it can only
            # be newer than the revision, never older (the next read catches up).
            deployments = routed_deployments(s, production, utcnow())
        return RoutingState(revision=revision, models=tuple(
            RoutedModel(name=name, production_version=production[name],
                        aliases=dict(sorted(aliases.get(name, {}).items())),
                        tags=tags.get(name, {}), deployment=deployments.get(name))
            for name in sorted(production)))

    def artifact_digests(self) -> set[str]:
        """Every artifact (manifest) digest a version points at."""
        with self._db.session() as s:
            return set(s.scalars(select(ModelVersionRow.artifact_digest).distinct()))

    def check_lineage(self, run_id: str | None, dataset_refs: Sequence[tuple[str, int]]) -> None:
        """Raise RunNotFoundError / DatasetNotFoundError for a reference to nothing."""
        with self._db.session() as s:
            if run_id is not None and s.get(RunRow, run_id) is None:
                raise RunNotFoundError(run_id)
            for name, version in dataset_refs:
                self._dataset_version_id(s, name, version)

    # --- writes ---------------------------------------------------------------------

    def create_version(self, new: NewVersion, choose: ChooseVersion, *,
                       dataset_refs: Sequence[tuple[str, int]] = (),
                       imported_from: str | None = None) -> ModelVersion:
        """Insert a version whose number ``choose`` picks from the current latest.

        ``imported_from`` (an archive's name): the version comes from another registry,
        whose runs and datasets this one does not have; its lineage is kept as recorded
        there, without links to rows here, and the audit entry is ``model.import``.

        Raises VersionExistsError if the chosen number is taken (an explicit version);
        RunNotFoundError / DatasetNotFoundError for dangling lineage.
        """
        try:
            with self._db.session(write=True) as s:
                model = self._lock_or_create_model(s, new.model)
                latest = self._latest_row(s, model.id)
                number = choose(self._version(s, model, latest) if latest else None)
                if (imported_from is None and new.lineage.run_id is not None
                        and s.get(RunRow, new.lineage.run_id) is None):
                    raise RunNotFoundError(new.lineage.run_id)
                dataset_ids = [self._dataset_version_id(s, n, v) for n, v in dataset_refs]
                if self._find_version_row(s, model.id, number) is not None:
                    raise VersionExistsError(new.model, str(number))
                now = utcnow()
                row = ModelVersionRow(
                    model_id=model.id, major=number.major, minor=number.minor,
                    patch=number.patch, flavor=new.flavor, flavor_meta=dict(new.flavor_meta),
                    stage=Stage.NONE.value, artifact_digest=new.artifact_digest,
                    artifact_size=new.artifact_size,
                    signature=new.signature.to_dict() if new.signature else None,
                    input_example=new.input_example, metrics=dict(new.metrics),
                    params={k: str(v) for k, v in new.params.items()},
                    lineage=new.lineage.to_dict(),
                    run_id=None if imported_from is not None else new.lineage.run_id,
                    description=new.description, created_at=now)
                s.add(row)
                s.flush()
                s.add_all(VersionDatasetRow(version_id=row.id, dataset_version_id=d)
                          for d in dict.fromkeys(dataset_ids))
                s.add_all(VersionTagRow(version_id=row.id, key=k, value=str(v))
                          for k, v in new.tags.items())
                if new.reference is not None:
                    s.add(new_reference_row(row.id, new.reference))
                model.updated_at = now
                s.flush()
                version = self._version(s, model, row)
                audit.append(s, "model.register" if imported_from is None else "model.import",
                             f"{new.model}:{number}",
                             after={"flavor": new.flavor,
                                    "artifact_digest": new.artifact_digest,
                                    "run_id": new.lineage.run_id,
                                    **({} if imported_from is None
                                       else {"archive": imported_from})})
                bump_routing_revision(s)
                return version
        except WriteConflictError as exc:
            # Lost a race with a concurrent registration (the unique semver constraint
            # backs up the row lock); the registry picks a number again.
            raise ConcurrentVersionError(new.model) from exc

    def transition(self, name: str, version: str, target: Stage, *,
                   reason: str = "") -> list[StageChange]:
        """Move a version to ``target``; promoting archives the previous production."""
        try:
            with self._db.session(write=True) as s:
                model = self._lock_model(s, name)
                row = self._version_row(s, model, version)
                source = Stage(row.stage)
                if source is target:
                    return []
                if not source.can_move_to(target):
                    raise IllegalTransitionError(name, version, source.value, target.value,
                                                 [t.value for t in source.allowed_targets()])
                now = utcnow()
                changes: list[StageChange] = []
                if target is Stage.PRODUCTION or source is Stage.PRODUCTION:
                    refuse_during_rollout(s, name)
                if target is Stage.PRODUCTION:
                    current = s.scalar(select(ModelVersionRow).where(
                        ModelVersionRow.model_id == model.id,
                        ModelVersionRow.stage == Stage.PRODUCTION.value))
                    if current is not None:
                        changes.append(self._move(s, name, current, Stage.ARCHIVED,
                                                  f"replaced by {version}", now))
                        s.flush()  # free the one-production slot before taking it
                changes.append(self._move(s, name, row, target, reason, now))
                model.updated_at = now
                for change in changes:
                    audit.append(s, "model.stage", f"{name}:{change.version}",
                                 before={"stage": change.from_stage.value},
                                 after={"stage": change.to_stage.value, "reason": change.reason})
                bump_routing_revision(s)
                return changes
        except WriteConflictError as exc:
            raise ConflictError(
                f"another change to {name!r} happened at the same time; try again") from exc

    def rollback(self, name: str, *, reason: str,
                 from_version: str | None = None) -> list[StageChange]:
        """Put the version production had before the current one back into production
        and archive the current one, in one transaction (the model row locked).

        Raises NothingToRollBackError when there is no production version, or no
        earlier one still archived, and ConflictError when ``from_version`` is given and
        is no longer in production (another change won: one rollback, not two)."""
        try:
            with self._db.session(write=True) as s:
                model = self._lock_model(s, name)
                current = s.scalar(select(ModelVersionRow).where(
                    ModelVersionRow.model_id == model.id,
                    ModelVersionRow.stage == Stage.PRODUCTION.value))
                if current is None:
                    raise NothingToRollBackError(name, "it has no production version")
                refuse_during_rollout(s, name)
                if from_version is not None and _number(current) != from_version:
                    raise ConflictError(
                        f"{name} {from_version} is no longer in production "
                        f"({_number(current)} is): not rolled back")
                previous = self._rollback_target(s, model.id, current.id)
                if previous is None:
                    raise NothingToRollBackError(
                        name, f"no version that was in production before {_number(current)} "
                        "is archived")
                now = utcnow()
                changes = [self._move(s, name, current, Stage.ARCHIVED,
                                      f"rolled back to {_number(previous)}: {reason}", now)]
                s.flush()  # free the one-production slot before taking it
                changes.append(self._move(s, name, previous, Stage.PRODUCTION,
                                          f"{_ROLLBACK}{reason}", now))
                model.updated_at = now
                audit.append(s, "model.rollback", name,
                             before={"production": _number(current)},
                             after={"production": _number(previous), "reason": reason})
                bump_routing_revision(s)
                return changes
        except WriteConflictError as exc:
            raise ConflictError(f"a concurrent change of {name!r} won; try again") from exc

    def set_alias(self, name: str, alias: str, version: str) -> ModelVersion:
        with self._db.session(write=True) as s:
            model = self._lock_model(s, name)
            row = self._version_row(s, model, version)
            existing = s.get(AliasRow, (model.id, alias))
            now = utcnow()
            before = None
            if existing is None:
                s.add(AliasRow(model_id=model.id, alias=alias, version_id=row.id, updated_at=now))
            else:
                old = s.get(ModelVersionRow, existing.version_id)
                before = {"version": _number(old)} if old is not None else None
                existing.version_id = row.id
                existing.updated_at = now
            model.updated_at = now
            s.flush()
            audit.append(s, "model.alias.set", f"{name}@{alias}", before=before,
                         after={"version": _number(row)})
            bump_routing_revision(s)
            return self._version(s, model, row)

    def delete_alias(self, name: str, alias: str) -> None:
        with self._db.session(write=True) as s:
            model = self._model_row(s, name)
            existing = s.get(AliasRow, (model.id, alias))
            if existing is None:
                raise AliasNotFoundError(name, alias)
            old = s.get(ModelVersionRow, existing.version_id)
            s.delete(existing)
            audit.append(s, "model.alias.delete", f"{name}@{alias}",
                         before={"version": _number(old)} if old is not None else None)
            bump_routing_revision(s)

    def set_model_tags(self, name: str, tags: Mapping[str, str]) -> None:
        with self._db.session(write=True) as s:
            model = self._model_row(s, name)
            for key, value in tags.items():
                s.merge(ModelTagRow(model_id=model.id, key=key, value=value))
            audit.append(s, "model.tags", name, after=dict(tags))
            bump_routing_revision(s)

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        with self._db.session(write=True) as s:
            row = self._version_row(s, self._model_row(s, name), version)
            for key, value in tags.items():
                s.merge(VersionTagRow(version_id=row.id, key=key, value=value))
            audit.append(s, "model.version.tags", f"{name}:{_number(row)}", after=dict(tags))

    def set_sunset(self, name: str, version: str, sunset: dt.date | None) -> ModelVersion:
        with self._db.session(write=True) as s:
            model = self._model_row(s, name)
            row = self._version_row(s, model, version)
            before = {"sunset": row.sunset.isoformat() if row.sunset else None}
            row.sunset = sunset
            s.flush()
            audit.append(s, "model.deprecate", f"{name}:{_number(row)}", before=before,
                         after={"sunset": sunset.isoformat() if sunset else None})
            bump_routing_revision(s)
            return self._version(s, model, row)

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def _move(s: Session, name: str, row: ModelVersionRow, target: Stage, reason: str,
              now: dt.datetime) -> StageChange:
        change = StageChange(model=name, version=_semver(row), from_stage=Stage(row.stage),
                             to_stage=target, reason=reason, at=now)
        s.add(StageHistoryRow(version_id=row.id, from_stage=row.stage, to_stage=target.value,
                              reason=reason, at=now))
        row.stage = target.value
        return change

    @staticmethod
    def _rollback_target(s: Session, model_id: int,
                         current_id: int) -> ModelVersionRow | None:
        """The version production had before the current one, from the stage history
        replayed as a stack: a promotion pushes, a rollback pops. So rolling back twice
        goes v3 -> v2 -> v1 (never back to the v3 just rolled back from); versions no
        longer archived are skipped."""
        promotions = s.execute(
            select(StageHistoryRow.version_id, StageHistoryRow.reason)
            .join(ModelVersionRow, StageHistoryRow.version_id == ModelVersionRow.id)
            .where(ModelVersionRow.model_id == model_id,
                   StageHistoryRow.to_stage == Stage.PRODUCTION.value)
            .order_by(StageHistoryRow.id)).all()
        stack: list[int] = []
        for version_id, reason in promotions:
            if reason.startswith(_ROLLBACK) and stack:
                stack.pop()  # the version rolled back from
            if not stack or stack[-1] != version_id:
                stack.append(version_id)
        for version_id in reversed(stack):
            if version_id == current_id:
                continue
            row = s.get(ModelVersionRow, version_id)
            if row is not None and row.stage == Stage.ARCHIVED.value:
                return row
        return None

    @staticmethod
    def _model_row(s: Session, name: str) -> ModelRow:
        row = s.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            raise ModelNotFoundError(name)
        return row

    def _lock_model(self, s: Session, name: str) -> ModelRow:
        row = s.scalar(select(ModelRow).where(ModelRow.name == name).with_for_update())
        if row is None:
            raise ModelNotFoundError(name)
        return row

    def _lock_or_create_model(self, s: Session, name: str) -> ModelRow:
        row = s.scalar(select(ModelRow).where(ModelRow.name == name).with_for_update())
        if row is not None:
            return row
        now = utcnow()
        # A savepoint, so that losing the race to create the model row (PostgreSQL)
        # does not abort the whole transaction: the winner's row is then locked.
        try:
            with s.begin_nested():
                row = ModelRow(name=name, description="", created_at=now, updated_at=now)
                s.add(row)
        except IntegrityError:
            row = s.scalar(select(ModelRow).where(ModelRow.name == name).with_for_update())
            assert row is not None
        return row

    @staticmethod
    def _find_version_row(s: Session, model_id: int, number: SemVer) -> ModelVersionRow | None:
        return s.scalar(select(ModelVersionRow).where(
            ModelVersionRow.model_id == model_id, ModelVersionRow.major == number.major,
            ModelVersionRow.minor == number.minor, ModelVersionRow.patch == number.patch))

    def _version_row(self, s: Session, model: ModelRow, version: str) -> ModelVersionRow:
        number = SemVer.parse(version)
        row = self._find_version_row(s, model.id, number)
        if row is None:
            raise VersionNotFoundError(model.name, version)
        return row

    def _resolve_row(self, s: Session, model: ModelRow, ref: str) -> ModelVersionRow:
        if SemVer.looks_like(ref):
            return self._version_row(s, model, ref)
        row: ModelVersionRow | None
        if ref == "latest":
            row = self._latest_row(s, model.id)
        elif ref.startswith("@") and ref[1:] in {st.value for st in Stage}:
            row = s.scalar(select(ModelVersionRow).where(
                ModelVersionRow.model_id == model.id, ModelVersionRow.stage == ref[1:])
                .order_by(ModelVersionRow.major.desc(), ModelVersionRow.minor.desc(),
                          ModelVersionRow.patch.desc()).limit(1))
        else:
            alias = s.get(AliasRow, (model.id, ref))
            row = s.get(ModelVersionRow, alias.version_id) if alias else None
        if row is None:
            raise VersionNotFoundError(model.name, ref)
        return row

    @staticmethod
    def _latest_row(s: Session, model_id: int) -> ModelVersionRow | None:
        return s.scalar(
            select(ModelVersionRow).where(ModelVersionRow.model_id == model_id)
            .order_by(ModelVersionRow.major.desc(), ModelVersionRow.minor.desc(),
                      ModelVersionRow.patch.desc()).limit(1))

    @staticmethod
    def _dataset_version_id(s: Session, name: str, version: int) -> int:
        q = (select(DatasetVersionRow.id).join(DatasetRow)
             .where(DatasetRow.name == name, DatasetVersionRow.version == version))
        found = s.scalar(q)
        if found is None:
            raise DatasetNotFoundError(name, version)
        return found

    def _model(self, s: Session, row: ModelRow) -> Model:
        tags = {t.key: t.value for t in s.scalars(
            select(ModelTagRow).where(ModelTagRow.model_id == row.id)
            .order_by(ModelTagRow.key))}
        aliases = {a.alias: _semver(v) for a, v in s.execute(
            select(AliasRow, ModelVersionRow).join(
                ModelVersionRow, AliasRow.version_id == ModelVersionRow.id)
            .where(AliasRow.model_id == row.id).order_by(AliasRow.alias)).all()}
        latest = self._latest_row(s, row.id)
        production = s.scalar(select(ModelVersionRow).where(
            ModelVersionRow.model_id == row.id, ModelVersionRow.stage == Stage.PRODUCTION.value))
        return Model(name=row.name, description=row.description, tags=tags, aliases=aliases,
                     latest_version=_semver(latest) if latest else None,
                     production_version=_semver(production) if production else None,
                     created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))

    @staticmethod
    def _version(s: Session, model: ModelRow, row: ModelVersionRow, *,
                 tags: Mapping[str, str] | None = None,
                 aliases: tuple[str, ...] | None = None) -> ModelVersion:
        """The version of ``row``; its ``tags`` and ``aliases`` are read unless given
        (a list of versions reads them all at once)."""
        if tags is None:
            tags = {t.key: t.value for t in s.scalars(
                select(VersionTagRow).where(VersionTagRow.version_id == row.id)
                .order_by(VersionTagRow.key))}
        if aliases is None:
            aliases = tuple(s.scalars(select(AliasRow.alias).where(
                AliasRow.version_id == row.id).order_by(AliasRow.alias)))
        lineage = dict(row.lineage or {})
        return ModelVersion(
            model=model.name, version=_semver(row), flavor=row.flavor,
            stage=Stage(row.stage), artifact_digest=row.artifact_digest,
            artifact_size=row.artifact_size,
            signature=Signature.from_dict(row.signature) if row.signature else None,
            input_example=row.input_example, metrics=dict(row.metrics or {}),
            params=dict(row.params or {}),
            lineage=Lineage.from_dict(lineage),
            flavor_meta=dict(row.flavor_meta or {}), tags=tags, aliases=aliases,
            description=row.description, sunset=row.sunset, created_at=as_utc(row.created_at))


# One increment per transaction, atomic on both databases: PostgreSQL holds the row lock
# until the commit, SQLite write transactions are serialised. The row is created when it
# is missing (a table emptied by hand), so the revision still grows.
_BUMP = text("INSERT INTO routing_revision (id, revision) VALUES (1, 1) "
             "ON CONFLICT (id) DO UPDATE SET revision = routing_revision.revision + 1")


def bump_routing_revision(s: Session) -> None:
    """Bump the routing revision in the transaction ``s`` of a change to what is served.

    Concurrent bumps never lose one another (one atomic statement). Call it last in the
    transaction (after the audit entry), so that every writer takes the locks in the
    same order."""
    s.execute(_BUMP)


def _routing_state_query() -> Any:
    # Rows (kind, model, key, value, major, minor, patch): "r" the revision (in major),
    # "p" each model and its production version (NULLs without one), "a" its aliases,
    # "t" its tags. One UNION ALL, so the revision and the state come from one snapshot.
    no_text = cast(null(), String)
    no_int = cast(null(), Integer)
    revision = select(literal("r"), no_text, no_text, no_text, RoutingRevisionRow.revision,
                      no_int, no_int).where(RoutingRevisionRow.id == 1)
    production = select(
        literal("p"), ModelRow.name, no_text, no_text, ModelVersionRow.major,
        ModelVersionRow.minor, ModelVersionRow.patch,
    ).select_from(ModelRow).outerjoin(ModelVersionRow, and_(
        ModelVersionRow.model_id == ModelRow.id,
        ModelVersionRow.stage == Stage.PRODUCTION.value))
    aliases = (select(literal("a"), ModelRow.name, AliasRow.alias, no_text,
                      ModelVersionRow.major, ModelVersionRow.minor, ModelVersionRow.patch)
               .select_from(AliasRow).join(ModelRow, AliasRow.model_id == ModelRow.id)
               .join(ModelVersionRow, AliasRow.version_id == ModelVersionRow.id))
    tags = (select(literal("t"), ModelRow.name, ModelTagRow.key, ModelTagRow.value,
                   no_int, no_int, no_int)
            .select_from(ModelTagRow).join(ModelRow, ModelTagRow.model_id == ModelRow.id))
    return union_all(revision, production, aliases, tags)


_ROUTING_STATE = _routing_state_query()


def _semver(row: ModelVersionRow) -> str:
    return f"{row.major}.{row.minor}.{row.patch}"



def _number(row: ModelVersionRow) -> str:
    return f"{row.major}.{row.minor}.{row.patch}"


# Shared with the deployment store, whose changes move stages in their own transaction.
ROLLBACK_REASON = _ROLLBACK
move_stage = ModelStore._move
rollback_target = ModelStore._rollback_target
semver_of = _semver


def refuse_during_rollout(s: Session, name: str) -> None:
    """Production changes through its rollout while one runs: a stage move in or out of
    production, or a rollback of production, would leave the rollout splitting traffic
    from a version that no longer serves. Raises ConflictError naming the rollout."""
    row = s.get(DeploymentRow, name)
    if row is not None and row.state in RUNNING:
        what = Strategy(row.strategy).with_article if row.strategy else "a rollout"
        raise ConflictError(
            f"{what} of {name} {row.candidate} is {row.state}: promote, abort or roll it "
            "back with 'modelhost rollout' (or /v1/deployments) instead")



def lock_model(s: Session, name: str, *, lock: bool = True) -> ModelRow:
    """The model's row, locked for the transaction (``lock``). Raises
    ModelNotFoundError."""
    query = select(ModelRow).where(ModelRow.name == name)
    row = s.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise ModelNotFoundError(name)
    return row

"""The nouns of modelhost as frozen dataclasses and closed Enums. Standard library only.

Stores return these, never ORM rows; every layer above speaks in them.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelhost.errors import InvalidVersionError

# --- stages ---------------------------------------------------------------------------


class Stage(str, enum.Enum):
    """Lifecycle of a model version; a closed set with an explicit transition table."""

    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"

    def allowed_targets(self) -> tuple[Stage, ...]:
        return _STAGE_TRANSITIONS[self]

    def can_move_to(self, target: Stage) -> bool:
        return target in _STAGE_TRANSITIONS[self]


# A version reaches production only through staging. Archived versions may go straight
# back to production: that is what a rollback to the previous stable version does.
_STAGE_TRANSITIONS: dict[Stage, tuple[Stage, ...]] = {
    Stage.NONE: (Stage.STAGING, Stage.ARCHIVED),
    Stage.STAGING: (Stage.PRODUCTION, Stage.NONE, Stage.ARCHIVED),
    Stage.PRODUCTION: (Stage.STAGING, Stage.ARCHIVED),
    Stage.ARCHIVED: (Stage.STAGING, Stage.PRODUCTION),
}


class RunStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"


class Bump(enum.IntEnum):
    """How far a new version must move, ordered so that ``max`` picks the strongest."""

    PATCH = 0
    MINOR = 1
    MAJOR = 2


# --- semantic versions ----------------------------------------------------------------

_SEMVER = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")


@dataclass(frozen=True, order=True)
class SemVer:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        match = _SEMVER.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidVersionError(str(text))
        return cls(int(match[1]), int(match[2]), int(match[3]))

    @classmethod
    def looks_like(cls, text: str) -> bool:
        return bool(_SEMVER.match(text))

    def bump(self, kind: Bump) -> SemVer:
        if kind is Bump.MAJOR:
            return SemVer(self.major + 1, 0, 0)
        if kind is Bump.MINOR:
            return SemVer(self.major, self.minor + 1, 0)
        return SemVer(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


# --- signatures -----------------------------------------------------------------------


class ColumnType(str, enum.Enum):
    DOUBLE = "double"
    FLOAT = "float"
    LONG = "long"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"
    DATETIME = "datetime"

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnType.DOUBLE, ColumnType.FLOAT, ColumnType.LONG, ColumnType.INTEGER)


@dataclass(frozen=True)
class ColumnSpec:
    """One named input or output column.

    ``required``: a request must carry the column. ``nullable``: null/NaN values are
    accepted (inferred from missing values in the training data).
    """

    name: str
    type: ColumnType
    required: bool = True
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.value, "required": self.required,
                "nullable": self.nullable}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        return cls(name=str(data["name"]), type=ColumnType(data["type"]),
                   required=bool(data.get("required", True)),
                   nullable=bool(data.get("nullable", False)))


@dataclass(frozen=True)
class TensorSpec:
    """A named (or unnamed) tensor; ``-1`` in ``shape`` is a free dimension (the batch)."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(dtype=str(data["dtype"]), shape=tuple(int(d) for d in data["shape"]),
                   name=data.get("name"))


Spec = ColumnSpec | TensorSpec


@dataclass(frozen=True)
class Signature:
    """The input/output contract of a model version.

    Inputs are either all columns (tabular models) or one or more tensors.
    """

    inputs: tuple[Spec, ...]
    outputs: tuple[Spec, ...] = ()

    @property
    def is_tensor(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], TensorSpec)

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(s for s in self.inputs if isinstance(s, ColumnSpec))

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [_spec_to_dict(s) for s in self.inputs],
                "outputs": [_spec_to_dict(s) for s in self.outputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(inputs=tuple(_spec_from_dict(s) for s in data.get("inputs", ())),
                   outputs=tuple(_spec_from_dict(s) for s in data.get("outputs", ())))


def _spec_to_dict(spec: Spec) -> dict[str, Any]:
    kind = "tensor" if isinstance(spec, TensorSpec) else "column"
    return {"kind": kind, **spec.to_dict()}


def _spec_from_dict(data: Mapping[str, Any]) -> Spec:
    if data.get("kind") == "tensor" or "dtype" in data:
        return TensorSpec.from_dict(data)
    return ColumnSpec.from_dict(data)


# --- registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: run, datasets, code and environment."""

    run_id: str | None = None
    dataset_versions: tuple[str, ...] = ()  # "name@version"
    git_commit: str | None = None
    python_version: str | None = None
    packages: Mapping[str, str] = field(default_factory=dict)
    # The feature service the model was trained with, and the version of the feature
    # definitions it was read from: the server looks these features up for it.
    feature_service: str | None = None
    features_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dataset_versions": list(self.dataset_versions),
                "git_commit": self.git_commit, "python_version": self.python_version,
                "packages": dict(self.packages), "feature_service": self.feature_service,
                "features_version": self.features_version}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        return cls(run_id=data.get("run_id"),
                   dataset_versions=tuple(data.get("dataset_versions") or ()),
                   git_commit=data.get("git_commit"),
                   python_version=data.get("python_version"),
                   packages=dict(data.get("packages") or {}),
                   feature_service=data.get("feature_service"),
                   features_version=data.get("features_version"))


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: str
    flavor: str
    stage: Stage
    artifact_digest: str
    artifact_size: int
    signature: Signature | None
    input_example: Any
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    lineage: Lineage
    flavor_meta: Mapping[str, Any]
    tags: Mapping[str, str]
    aliases: tuple[str, ...]
    description: str
    sunset: dt.date | None
    created_at: dt.datetime

    @property
    def semver(self) -> SemVer:
        return SemVer.parse(self.version)

    @property
    def deprecated(self) -> bool:
        return self.sunset is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.version, "flavor": self.flavor,
            "stage": self.stage.value, "artifact_digest": self.artifact_digest,
            "artifact_size": self.artifact_size,
            "signature": self.signature.to_dict() if self.signature else None,
            "input_example": self.input_example, "metrics": dict(self.metrics),
            "params": dict(self.params), "lineage": self.lineage.to_dict(),
            "flavor_meta": dict(self.flavor_meta), "tags": dict(self.tags),
            "aliases": list(self.aliases), "description": self.description,
            "sunset": self.sunset.isoformat() if self.sunset else None,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVersion:
        """The version a server sent (:meth:`to_dict`'s shape)."""
        signature = data.get("signature")
        sunset = data.get("sunset")
        return cls(
            model=str(data["model"]), version=str(data["version"]),
            flavor=str(data["flavor"]), stage=Stage(data["stage"]),
            artifact_digest=str(data["artifact_digest"]),
            artifact_size=int(data["artifact_size"]),
            signature=Signature.from_dict(signature) if signature else None,
            input_example=data.get("input_example"),
            metrics=dict(data.get("metrics") or {}), params=dict(data.get("params") or {}),
            lineage=Lineage.from_dict(data.get("lineage") or {}),
            flavor_meta=dict(data.get("flavor_meta") or {}),
            tags=dict(data.get("tags") or {}), aliases=tuple(data.get("aliases") or ()),
            description=str(data.get("description") or ""),
            sunset=dt.date.fromisoformat(sunset) if sunset else None,
            created_at=dt.datetime.fromisoformat(data["created_at"]))


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    tags: Mapping[str, str]
    aliases: Mapping[str, str]  # alias -> version
    latest_version: str | None
    production_version: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "tags": dict(self.tags),
                "aliases": dict(self.aliases), "latest_version": self.latest_version,
                "production_version": self.production_version,
                "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Model:
        return cls(name=str(data["name"]), description=str(data.get("description") or ""),
                   tags=dict(data.get("tags") or {}), aliases=dict(data.get("aliases") or {}),
                   latest_version=data.get("latest_version"),
                   production_version=data.get("production_version"),
                   created_at=dt.datetime.fromisoformat(data["created_at"]),
                   updated_at=dt.datetime.fromisoformat(data["updated_at"]))


# --- deployments ----------------------------------------------------------------------


class Strategy(str, enum.Enum):
    """How a new version reaches production (PRODUCT.md §3.7)."""

    BLUE_GREEN = "blue_green"
    CANARY = "canary"
    AB = "ab"
    SHADOW = "shadow"

    @property
    def words(self) -> str:
        """The rollout in words: ``canary``, ``A/B test``, ..."""
        return _STRATEGY_WORDS[self]

    @property
    def with_article(self) -> str:
        """``a canary``, ``an A/B test``: for messages."""
        return f"{'an' if self.words[0] in 'AEIOU' else 'a'} {self.words}"


_STRATEGY_WORDS = {Strategy.BLUE_GREEN: "blue-green switch", Strategy.CANARY: "canary",
                   Strategy.AB: "A/B test", Strategy.SHADOW: "shadow"}


class RolloutState(str, enum.Enum):
    """Where a model's deployment is; a closed set with an explicit transition table."""

    IDLE = "idle"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    @property
    def running(self) -> bool:
        """A rollout is under way: another may not start."""
        return self in (RolloutState.PROGRESSING, RolloutState.PAUSED)

    def can_move_to(self, target: RolloutState) -> bool:
        return target in ROLLOUT_TRANSITIONS[self]


_DONE = (RolloutState.PROGRESSING, RolloutState.ROLLED_BACK)  # a new rollout, or a rollback
# A step of a canary moves PROGRESSING to itself. A finished rollout (promoted, rolled back,
# aborted) is idle in all but name: a new one may start, or production be rolled back.
ROLLOUT_TRANSITIONS: dict[RolloutState, tuple[RolloutState, ...]] = {
    RolloutState.IDLE: _DONE,
    RolloutState.PROGRESSING: (RolloutState.PROGRESSING, RolloutState.PAUSED,
                               RolloutState.PROMOTED, RolloutState.ROLLED_BACK,
                               RolloutState.ABORTED),
    RolloutState.PAUSED: (RolloutState.PROGRESSING, RolloutState.PROMOTED,
                          RolloutState.ROLLED_BACK, RolloutState.ABORTED),
    RolloutState.PROMOTED: _DONE,
    RolloutState.ROLLED_BACK: _DONE,
    RolloutState.ABORTED: _DONE,
}


@dataclass(frozen=True)
class Deployment:
    """One model's deployment: what serves it and how a rollout is going.

    ``stable`` is the production version; ``candidate`` takes ``candidate_weight`` of the
    traffic (canary, A/B) or a copy of ``shadow_fraction`` of it (shadow). ``previous`` is
    the version production had before, kept loaded until ``keep_until`` so that a
    rollback is instant. ``rollout_id`` salts the routing-key hash: a key keeps its arm
    for the whole rollout, and the next rollout draws its arms afresh.
    """

    model: str
    state: RolloutState = RolloutState.IDLE
    strategy: Strategy | None = None
    rollout_id: str | None = None
    stable: str | None = None
    candidate: str | None = None
    candidate_weight: float = 0.0
    shadow_fraction: float | None = None
    steps: tuple[float, ...] = ()
    step: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    analysis: Mapping[str, Any] = field(default_factory=dict)  # the controller's memory
    previous: str | None = None
    keep_until: dt.datetime | None = None
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    step_started_at: dt.datetime | None = None

    @property
    def weights(self) -> dict[str, float]:
        """Version -> share of live traffic; adds up to 1 (empty with nothing stable)."""
        if self.stable is None:
            return {}
        if (self.candidate is None or self.candidate_weight <= 0.0
                or self.strategy is Strategy.SHADOW):
            return {self.stable: 1.0}
        if self.candidate_weight >= 1.0:
            return {self.candidate: 1.0}
        return {self.stable: 1.0 - self.candidate_weight, self.candidate: self.candidate_weight}

    @property
    def shadow(self) -> dict[str, Any] | None:
        if (self.candidate is None or self.shadow_fraction is None
                or not self.state.running):
            return None
        return {"version": self.candidate, "fraction": self.shadow_fraction}

    def to_dict(self) -> dict[str, Any]:
        """The shape of PRODUCT.md §3.7."""
        return {"model": self.model, "stable": self.stable, "candidate": self.candidate,
                "strategy": None if self.strategy is None else self.strategy.value,
                "state": self.state.value, "weights": self.weights, "shadow": self.shadow,
                "step": self.step, "steps": list(self.steps), "options": dict(self.options),
                "rollout_id": self.rollout_id,
                "started_at": None if self.started_at is None else self.started_at.isoformat(),
                "updated_at": None if self.updated_at is None else self.updated_at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        """Back from :meth:`to_dict` (what a server answers): the candidate's weight
        from ``weights``, a shadow's fraction from ``shadow``; what the shape leaves out
        (the controller's memory, the version kept loaded) is left empty."""
        strategy = Strategy(data["strategy"]) if data.get("strategy") else None
        candidate = data.get("candidate")
        shadow = data.get("shadow")
        weights = data.get("weights") or {}
        return cls(model=data["model"], state=RolloutState(data["state"]),
                   strategy=strategy, rollout_id=data.get("rollout_id"),
                   stable=data.get("stable"), candidate=candidate,
                   candidate_weight=(0.0 if candidate is None or strategy is Strategy.SHADOW
                                     else float(weights.get(candidate, 0.0))),
                   shadow_fraction=None if not shadow else float(shadow["fraction"]),
                   steps=tuple(data.get("steps") or ()), step=int(data.get("step") or 0),
                   options=dict(data.get("options") or {}),
                   started_at=_time(data.get("started_at")),
                   updated_at=_time(data.get("updated_at")))


@dataclass(frozen=True)
class DeploymentEvent:
    """Something that happened to a deployment, and why: ``reason`` in words, the
    figures behind an automatic decision in ``numbers``."""

    model: str
    kind: str  # deploy, step, pause, resume, promote, abort, rollback, hold, ...
    at: dt.datetime
    from_version: str | None
    to_version: str | None
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None
    rollout_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind,
                "from_version": self.from_version, "to_version": self.to_version,
                "reason": self.reason, "numbers": dict(self.numbers), "actor": self.actor,
                "rollout_id": self.rollout_id}

    @classmethod
    def from_dict(cls, model: str, data: Mapping[str, Any]) -> DeploymentEvent:
        """Back from :meth:`to_dict` (an item of a server's ``events``)."""
        return cls(model=model, kind=data["kind"], at=dt.datetime.fromisoformat(data["at"]),
                   from_version=data.get("from_version"), to_version=data.get("to_version"),
                   reason=data.get("reason", ""), numbers=dict(data.get("numbers") or {}),
                   actor=data.get("actor"), rollout_id=data.get("rollout_id"))


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


@dataclass(frozen=True)
class RoutedModel:
    """What serving needs to know of one model: its production version, aliases, tags,
    and its deployment when a rollout is under way or a previous version is kept loaded."""

    name: str
    production_version: str | None
    aliases: Mapping[str, str]  # alias -> version
    tags: Mapping[str, str]
    deployment: Deployment | None = None


@dataclass(frozen=True)
class RoutingState:
    """Every model's routing facts as of one routing revision (models sorted by name).

    The revision grows with every change of stage, alias, model tags, sunset or the set
    of models; a server that saw this revision has nothing new to read until it changes.
    """

    revision: int
    models: tuple[RoutedModel, ...]


@dataclass(frozen=True)
class StageChange:
    model: str
    version: str
    from_stage: Stage
    to_stage: Stage
    reason: str
    at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version,
                "from_stage": self.from_stage.value, "to_stage": self.to_stage.value,
                "reason": self.reason, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageChange:
        return cls(model=str(data["model"]), version=str(data["version"]),
                   from_stage=Stage(data["from_stage"]), to_stage=Stage(data["to_stage"]),
                   reason=str(data.get("reason") or ""),
                   at=dt.datetime.fromisoformat(data["at"]))


# --- tracking -------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    name: str
    created_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: dt.datetime


@dataclass(frozen=True)
class Run:
    run_id: str
    experiment: str
    name: str
    status: RunStatus
    start_time: dt.datetime
    end_time: dt.datetime | None
    params: Mapping[str, str]
    metrics: Mapping[str, float]  # latest value of each metric
    tags: Mapping[str, str]
    git_commit: str | None
    artifacts: Mapping[str, str]  # relative path -> sha256
    datasets: tuple[str, ...]  # "name@version"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "experiment": self.experiment, "name": self.name,
                "status": self.status.value, "start_time": self.start_time.isoformat(),
                "end_time": self.end_time.isoformat() if self.end_time else None,
                "params": dict(self.params), "metrics": dict(self.metrics),
                "tags": dict(self.tags), "git_commit": self.git_commit,
                "artifacts": dict(self.artifacts), "datasets": list(self.datasets)}


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    digest: str
    format: str
    n_rows: int
    schema: Mapping[str, str]  # column -> ColumnType value
    profile: Mapping[str, Any]
    size: int
    created_at: dt.datetime

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest,
                "format": self.format, "n_rows": self.n_rows, "schema": dict(self.schema),
                "profile": dict(self.profile), "size": self.size,
                "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class LoggedPrediction:
    """One request of the prediction log: its validated inputs (``{"columns": [...],
    "data": [[...], ...]}`` for tables) and its outputs (``{"predictions": [...]}``, with
    ``"probabilities"`` when the model has them), as JSON values."""

    request_id: str
    model: str
    version: str
    arm: str | None
    at: dt.datetime
    rows: int
    inputs: Any
    outputs: Any


@dataclass(frozen=True)
class Feedback:
    """The ground truth sent for one logged request: a label, or one per row predicted."""

    request_id: str
    model: str
    version: str
    label: Any
    received_at: dt.datetime
    updated_at: dt.datetime


# Split out (the module grew past a few hundred lines); importable from here as before.
from modelhost.entities.jobs import JOB_TRANSITIONS as JOB_TRANSITIONS  # noqa: E402
from modelhost.entities.jobs import Job as Job  # noqa: E402
from modelhost.entities.jobs import JobInput as JobInput  # noqa: E402
from modelhost.entities.jobs import JobStatus as JobStatus  # noqa: E402

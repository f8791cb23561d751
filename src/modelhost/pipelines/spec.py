"""``modelhost.yaml``: the pipeline spec, parsed strictly, with errors that name the key.

A pipeline is ``validate -> your steps -> gate -> register -> deploy``. Your steps
(``features``, ``train``, ``evaluate``, ...) are Python callables ``module:function`` with
declared inputs, params and outputs; validation, gates, registration and deployment are
built in and configured by their own sections. See docs/pipelines.md for the reference.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelhost._paths import safe_relpath
from modelhost._utils import validate_name
from modelhost.errors import InvalidInputError, PathEscapeError
from modelhost.pipelines import deploy as deploy_strategies
from modelhost.pipelines.errors import PipelineSpecError
from modelhost.pipelines.scoring import get_metric

# Built-in steps, in the order they run around your own steps.
VALIDATE, GATE, REGISTER, DEPLOY = "validate", "gate", "register", "deploy"
BUILTIN_STEPS = (VALIDATE, GATE, REGISTER, DEPLOY)
DATASETS = "datasets"  # the source part of an input reference to a dataset

_STEP_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CALL = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
DEFAULT_WORK_DIR = ".modelhost-pipeline"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _relative_path(value: str, what: str) -> str:
    try:
        return safe_relpath(value)
    except PathEscapeError:
        raise ValueError(f"{what} {value!r} must be a path relative to the spec's folder "
                         "that stays inside it") from None


@dataclass(frozen=True)
class Ref:
    """A reference to a step input: ``datasets.NAME`` or ``STEP.OUTPUT``."""

    source: str
    name: str

    @property
    def is_dataset(self) -> bool:
        return self.source == DATASETS

    def __str__(self) -> str:
        return f"{self.source}.{self.name}"


def parse_ref(text: str) -> Ref:
    source, dot, name = str(text).partition(".")
    if not dot or not source or not name:
        raise ValueError(f"reference {text!r} must look like 'datasets.NAME' or "
                         "'STEP.OUTPUT'")
    return Ref(source, name)


# --- sections -------------------------------------------------------------------------


class DatasetSpec(_Strict):
    """A data input, versioned in the dataset store under its key."""

    path: str | None = None
    version: int | Literal["latest"] | None = None
    schema_file: str | None = Field(default=None, alias="schema")

    @field_validator("path", "schema_file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        return None if value is None else _relative_path(value, "path")

    @field_validator("version")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("a dataset version is a number >= 1 or 'latest'")
        return value

    @model_validator(mode="after")
    def _path_or_version(self) -> DatasetSpec:
        if self.path is not None and self.version is not None:
            raise ValueError("give either 'path' (a file to version) or 'version' (one "
                             "already in the dataset store), not both")
        return self


class StepSpec(_Strict):
    """One of your steps: ``call`` receives a StepContext and returns its outputs."""

    call: str
    inputs: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)
    deps: list[str] = Field(default_factory=list)

    @field_validator("call")
    @classmethod
    def _call(cls, value: str) -> str:
        if not _CALL.match(value):
            raise ValueError(f"{value!r} must look like 'module:function' (e.g. "
                             "'steps:train'), the module a .py file next to the spec or an "
                             "installed package")
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: dict[str, str]) -> dict[str, str]:
        for key, ref in value.items():
            if not _OUTPUT_NAME.match(key):
                raise ValueError(f"input name {key!r} must be a Python identifier")
            parse_ref(ref)
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _OUTPUT_NAME.match(str(name)):
                raise ValueError(f"output name {name!r} must be a Python identifier")
        if len(set(value)) != len(value):
            raise ValueError("output names must be unique")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            try:
                json.dumps(item, allow_nan=False)
            except (TypeError, ValueError):
                raise ValueError(f"param {key!r} must be a string, number, boolean, list or "
                                 f"mapping; got {type(item).__name__} (quote dates and "
                                 "other special values)") from None
        return value

    @field_validator("deps")
    @classmethod
    def _deps(cls, value: list[str]) -> list[str]:
        return [_relative_path(v, "dependency") for v in value]


class ModelSpec(_Strict):
    """The candidate model the gates judge and the register step registers."""

    name: str
    output: str
    input_example: str | None = None
    holdout: str | None = None
    target: str | None = None
    flavor: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid_name(value, "model")

    @field_validator("output", "input_example", "holdout")
    @classmethod
    def _refs(cls, value: str | None) -> str | None:
        if value is not None and parse_ref(value).is_dataset:
            raise ValueError(f"{value!r} must name a step output ('STEP.OUTPUT')")
        return value


class _Gate(_Strict):
    name: str | None = None


class ThresholdGate(_Gate):
    kind: Literal["threshold"]
    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> ThresholdGate:
        if self.min is None and self.max is None:
            raise ValueError("a threshold gate needs 'min', 'max' or both")
        return self

    def title(self) -> str:
        bounds = [f">= {self.min:g}" if self.min is not None else "",
                  f"<= {self.max:g}" if self.max is not None else ""]
        return self.name or f"{self.metric} {' and '.join(b for b in bounds if b)}"


class ProductionGate(_Gate):
    kind: Literal["not_worse_than_production"]
    metric: str
    tolerance: float = Field(default=0.0, ge=0)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return _known_metric(value)

    def title(self) -> str:
        return self.name or f"{self.metric} not worse than production"


class LatencyGate(_Gate):
    kind: Literal["latency"]
    p99_ms: float = Field(gt=0)
    repeats: int = Field(default=200, ge=10, le=100_000)

    def title(self) -> str:
        return self.name or f"latency p99 <= {self.p99_ms:g} ms"


class DataValidationGate(_Gate):
    kind: Literal["data_validation"]
    datasets: list[str] | None = None

    def title(self) -> str:
        return self.name or "data validation passed"


class FairnessGate(_Gate):
    kind: Literal["fairness"]
    group: str
    max_gap: float = Field(ge=0)
    metric: str = "accuracy"
    min_group_size: int = Field(default=1, ge=1)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return _known_metric(value)

    def title(self) -> str:
        return self.name or f"{self.metric} gap across {self.group!r} <= {self.max_gap:g}"


GateSpec = Annotated[ThresholdGate | ProductionGate | LatencyGate | DataValidationGate
                     | FairnessGate, Field(discriminator="kind")]
GATE_KINDS = ("threshold", "not_worse_than_production", "latency", "data_validation",
              "fairness")


class RegisterSpec(_Strict):
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class DeploySpec(_Strict):
    """How the registered version reaches traffic; ``options`` belong to the strategy."""

    strategy: str = "direct"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _available(self) -> DeploySpec:
        try:
            deploy_strategies.get_strategy(self.strategy).check_options(self.options)
        except InvalidInputError as exc:
            raise ValueError(exc.message) from None
        return self


class PipelineSpec(_Strict):
    name: str
    experiment: str | None = None
    description: str = ""
    work_dir: str = DEFAULT_WORK_DIR
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    steps: dict[str, StepSpec]
    model: ModelSpec | None = None
    gates: list[GateSpec] = Field(default_factory=list)
    register_: RegisterSpec | None = Field(default=None, alias="register")
    deploy: DeploySpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _valid_name(value, "pipeline")

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, value: str | None) -> str | None:
        return None if value is None else _valid_name(value, "experiment")

    @field_validator("work_dir")
    @classmethod
    def _work_dir(cls, value: str) -> str:
        return _relative_path(value, "work_dir")

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, value: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        for key in value:
            _valid_name(key, "dataset")
        return value

    @field_validator("register_", mode="before")
    @classmethod
    def _register_flag(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @field_validator("deploy", mode="before")
    @classmethod
    def _deploy_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if isinstance(value, str):  # "deploy: direct"
            return {"strategy": value}
        return None if value is False else value

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        problems = _cross_check(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    def gate_titles(self) -> list[str]:
        return [g.title() for g in self.gates]


def _valid_name(value: str, kind: str) -> str:
    try:
        return validate_name(value, kind)
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None


def _known_metric(value: str) -> str:
    try:
        get_metric(value)
    except InvalidInputError as exc:
        raise ValueError(exc.message) from None
    return value


def _cross_check(spec: PipelineSpec) -> list[str]:
    """Rules between sections: references, names, what needs what."""
    problems: list[str] = []
    if not spec.steps:
        problems.append("steps: a pipeline needs at least one step")
    declared: dict[str, set[str]] = {}
    for step, body in spec.steps.items():
        where = f"steps.{step}"
        if not _STEP_NAME.match(step):
            problems.append(f"{where}: a step name has 1-64 characters from a-z, 0-9, '_' and "
                            "'-', starting with a letter")
        if step in (*BUILTIN_STEPS, DATASETS):
            problems.append(f"{where}: {step!r} is a built-in step; configure it with its own "
                            "section (see docs/pipelines.md) or rename your step")
        for key, text in body.inputs.items():
            ref = parse_ref(text)
            if ref.is_dataset:
                if ref.name not in spec.datasets:
                    problems.append(f"{where}.inputs.{key}: unknown dataset {ref.name!r}; "
                                    f"declared: {_listing(spec.datasets)}")
            elif ref.source not in declared:
                later = " (it runs later; steps run in file order)" if ref.source in \
                    spec.steps else ""
                problems.append(f"{where}.inputs.{key}: {text!r} refers to no earlier step"
                                f"{later}")
            elif ref.name not in declared[ref.source]:
                problems.append(f"{where}.inputs.{key}: step {ref.source!r} declares no output "
                                f"{ref.name!r}; its outputs: {_listing(declared[ref.source])}")
        declared[step] = set(body.outputs)
    model = spec.model
    if model is not None:
        for field in ("output", "input_example", "holdout"):
            text = getattr(model, field)
            if text is None:
                continue
            ref = parse_ref(text)
            if ref.name not in declared.get(ref.source, set()):
                problems.append(f"model.{field}: {text!r} is not a declared step output")
    needs_model = [g.kind for g in spec.gates if g.kind in (
        "not_worse_than_production", "latency", "fairness")]
    if needs_model and model is None:
        problems.append(f"gates: a {needs_model[0]} gate needs a 'model' section naming the "
                        "candidate")
    for index, gate in enumerate(spec.gates):
        where = f"gates.{index}"
        if gate.kind in ("not_worse_than_production", "fairness") and model is not None and (
                model.holdout is None or model.target is None):
            problems.append(f"{where}: a {gate.kind} gate needs 'model.holdout' (a DataFrame "
                            "output with features and target) and 'model.target'")
        if gate.kind == "latency" and model is not None and model.input_example is None and (
                model.holdout is None):
            problems.append(f"{where}: a latency gate needs 'model.input_example' (or "
                            "'model.holdout')")
        if isinstance(gate, DataValidationGate):
            for name in gate.datasets or []:
                if name not in spec.datasets:
                    problems.append(f"{where}.datasets: unknown dataset {name!r}")
                elif spec.datasets[name].schema_file is None:
                    problems.append(f"{where}.datasets: dataset {name!r} has no 'schema' to "
                                    "validate against")
    if spec.register_ is not None and model is None:
        problems.append("register: registering needs a 'model' section naming the candidate")
    if spec.deploy is not None and spec.register_ is None:
        problems.append("deploy: deploying needs a 'register' section (the deploy step "
                        "promotes the version the register step creates)")
    return problems


def _listing(names: Any) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "none"


# --- loading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """A parsed spec and where it lives."""

    spec: PipelineSpec
    file: Path  # absolute path of modelhost.yaml
    text: str

    @property
    def folder(self) -> Path:
        return self.file.parent

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def lock_file(self) -> Path:
        """``modelhost.lock`` next to ``modelhost.yaml`` (``NAME.lock`` for ``NAME.yaml``)."""
        return self.file.with_suffix(".lock")

    @property
    def work_dir(self) -> Path:
        return self.folder / self.spec.work_dir

    def path(self, relative: str) -> Path:
        return self.folder / relative

    def step_names(self, *, release: bool = True) -> list[str]:
        """Every step in the order it runs."""
        names = [VALIDATE] if self.validates else []
        names += list(self.spec.steps)
        if release:
            names += [GATE] if self.spec.gates else []
            names += [REGISTER] if self.spec.register_ is not None else []
            names += [DEPLOY] if self.spec.deploy is not None else []
        return names

    @property
    def validates(self) -> bool:
        return any(d.schema_file for d in self.spec.datasets.values())


def load_spec(path: str | Path) -> Pipeline:
    """Read and check a ``modelhost.yaml``.

    Raises:
        FileNotFoundInputError: no such file.
        PipelineSpecError: invalid YAML or spec; the message names the key.
    """
    from modelhost.errors import FileNotFoundInputError

    file = Path(path)
    if file.is_dir():
        file = file / "modelhost.yaml"
    if not file.is_file():
        raise FileNotFoundInputError(str(path))
    text = file.read_text(encoding="utf-8")
    return parse_spec(text, file=file.resolve())


def parse_spec(text: str, *, file: Path) -> Pipeline:
    """Parse spec ``text`` as if read from ``file`` (relative paths start at its folder)."""
    label = file.name
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise PipelineSpecError(label, [f"not valid YAML{where}: {problem}"]) from None
    if not isinstance(data, dict):
        raise PipelineSpecError(label, ["the file must be a YAML mapping with 'name' and "
                                        "'steps'"])
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise PipelineSpecError(label, _problems(exc)) from None
    pipeline = Pipeline(spec=spec, file=file, text=text)
    missing = [f"datasets.{name}.schema: no file {body.schema_file!r} next to {label}"
               for name, body in spec.datasets.items()
               if body.schema_file and not pipeline.path(body.schema_file).is_file()]
    missing += [f"steps.{name}.deps: no file or folder {dep!r} next to {label}"
                for name, body in spec.steps.items() for dep in body.deps
                if not pipeline.path(dep).exists()]
    if missing:
        raise PipelineSpecError(label, missing)
    return pipeline


# --- error messages -------------------------------------------------------------------

_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "model": ModelSpec, "register": RegisterSpec, "deploy": DeploySpec}
_GATE_MODELS: dict[str, type[BaseModel]] = {
    "threshold": ThresholdGate, "not_worse_than_production": ProductionGate,
    "latency": LatencyGate, "data_validation": DataValidationGate, "fairness": FairnessGate}


def _problems(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error.get("loc", ()))
        kind = error.get("type", "")
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if loc else []
            message = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "") + (
                f"; allowed: {', '.join(allowed)}" if allowed else "")
            loc_text = _loc(loc)
        elif kind == "missing":
            message = "this key is required"
            loc_text = _loc(loc)
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            message = f"a gate needs 'kind': one of {', '.join(GATE_KINDS)}"
            loc_text = _loc(loc)
        else:
            loc_text = _loc(loc)
        if not loc_text:  # a rule between sections: the message names its keys
            problems.extend(message.splitlines())
        else:
            problems.append(f"{loc_text}: {message}")
    return problems or ["invalid pipeline"]


def _loc(loc: tuple[Any, ...]) -> str:
    # Discriminated unions add the tag ("threshold") after the list index: leave it out.
    parts = [str(p) for i, p in enumerate(loc)
             if not (i == 2 and loc[0] == "gates" and p in _GATE_MODELS)]
    return ".".join(parts)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] | None = None
    if len(loc) == 1:
        model = PipelineSpec
    elif len(loc) == 3 and loc[0] == "steps":
        model = StepSpec
    elif len(loc) == 3 and loc[0] == "datasets":
        model = DatasetSpec
    elif len(loc) == 2 and loc[0] in _SECTION_MODELS:
        model = _SECTION_MODELS[str(loc[0])]
    elif len(loc) == 4 and loc[0] == "gates":
        model = _GATE_MODELS.get(str(loc[2]))
    if model is None:
        return []
    return sorted(f.alias or n for n, f in model.model_fields.items())


__all__ = ["BUILTIN_STEPS", "DATASETS", "DEPLOY", "GATE", "REGISTER", "VALIDATE",
           "DataValidationGate", "DatasetSpec", "DeploySpec", "FairnessGate", "GateSpec",
           "LatencyGate", "ModelSpec", "Pipeline", "PipelineSpec", "ProductionGate", "Ref",
           "RegisterSpec", "StepSpec", "ThresholdGate", "load_spec", "parse_ref",
           "parse_spec"]

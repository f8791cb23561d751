"""The registry's use cases: register, stage, alias, tag, deprecate, card, load."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelhost import signature as signatures  # pandas loads on first use
from modelhost._utils import check_key, finite_number, validate_name
from modelhost.artifacts import ArtifactStore
from modelhost.entities import (
    DatasetVersion,
    Lineage,
    Model,
    ModelVersion,
    RoutingState,
    SemVer,
    Signature,
    Stage,
    StageChange,
)
from modelhost.errors import (
    FileNotFoundInputError,
    InvalidInputError,
    ModelLoadError,
    ReservedAliasError,
    VersionExistsError,
)
from modelhost.flavors import LoadedModel, flavor_for_object, flavor_for_path, get_flavor
from modelhost.registry import card, environment
from modelhost.registry.scoring import Scorer, first_line
from modelhost.registry.versioning import choose_version
from modelhost.store import ConcurrentVersionError, ModelStore, NewVersion
from modelhost.store.profiles import ProfileStore, StoredReference

if TYPE_CHECKING:
    from modelhost.registry.transfer import Exported, Imported

log = logging.getLogger(__name__)

_RESERVED_ALIASES = {"latest"}
_AUTO_BUMP_ATTEMPTS = 5


@dataclass(frozen=True)
class LoadedVersion:
    """A version and its model, loaded from verified artifacts and ready to predict.

    ``today`` is the clock for the version's sunset date (the registry passes its own)."""

    version: ModelVersion
    model: LoadedModel
    today: Callable[[], dt.date] = dataclasses.field(default=dt.date.today, repr=False,
                                                     compare=False)

    @functools.cached_property
    def _scorer(self) -> Scorer:
        # Built on first use: the signature's validator is made once per loaded version.
        return Scorer(self.version, self.model)

    def predict(self, inputs: Any) -> PredictionResult:
        """Predict on ``inputs``: records, a dict of columns (or of scalars: one row),
        a list of rows, or a DataFrame.

        With a signature the inputs are checked and converted by it (every problem is
        reported at once). A version registered without one passes them to the model as
        given: records and columns become a DataFrame with exactly the columns sent, a
        DataFrame goes as it is, a list of rows becomes an array.

        Raises:
            VersionSunsetError: the version is past its sunset date.
            SignatureViolationError: the inputs break the signature.
            InvalidInputError: inputs that are no table or array at all, or inputs for
                which the model gives NaN or infinite outputs.
            PredictionFailedError: the model raised.
        """
        predictions, probabilities = self._scorer.score(inputs, today=self.today())
        return PredictionResult(
            version=self.version, predictions=predictions.tolist(),
            probabilities=None if probabilities is None else probabilities.tolist())


@dataclass(frozen=True)
class PredictionResult:
    """The predictions of one version (and class probabilities when it has them)."""

    version: ModelVersion
    predictions: list[Any]
    probabilities: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The shape of the prediction API's answer (without request id)."""
        result: dict[str, Any] = {"model": self.version.model,
                                  "version": self.version.version,
                                  "predictions": self.predictions}
        if self.probabilities is not None:
            result["probabilities"] = self.probabilities
        return result


BindFeatures = Callable[[str, int | None, Signature | None], int]


class Registry:
    """Registry use cases over a model store and an artifact store.

    ``today`` is the clock used for sunset dates; pass a fixed one in tests.
    ``references`` lists every artifact digest in use, across all stores.
    """

    def __init__(self, models: ModelStore, artifacts: ArtifactStore, *,
                 today: Callable[[], dt.date] = dt.date.today,
                 trust_pickle: bool = False,
                 references: Callable[[], set[str]] | None = None,
                 profiles: ProfileStore | None = None,
                 bind_features: BindFeatures | None = None) -> None:
        self._models = models
        # Checks a feature service against a signature; returns the definitions' version.
        self._bind_features = bind_features
        self._profiles = profiles or ProfileStore(models.database)
        # Every artifact digest the metadata refers to (versions, datasets, run
        # artifacts): what a failed registration must not delete.
        self._references = references or models.artifact_digests
        self._artifacts = artifacts
        self._today = today
        self._trust_pickle = trust_pickle

    # --- register -------------------------------------------------------------------

    def register(
        self,
        model: object = None,
        *,
        name: str,
        path: str | Path | None = None,
        flavor: str | None = None,
        version: str | None = None,
        force: bool = False,
        input_example: Any = None,
        signature: Signature | None = None,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        run_id: str | None = None,
        git_commit: str | None = None,
        code_dir: str | Path | None = None,
        datasets: Iterable[DatasetVersion | str] = (),
        trust_pickle: bool = False,
        optimize: bool = False,
        reference_data: Any = None,
        reference_source: str = "the data given at registration",
        reference_optional: bool = False,
        feature_service: str | None = None,
        features_version: int | None = None,
    ) -> ModelVersion:
        """Register a new version of ``name`` from a Python object or a file/folder.

        Everything is checked before anything is written: the name, metrics, params and
        tags, the lineage references, the version rule, that the artifact loads, and that
        it predicts on the input example. Artifacts are then stored content-addressed and
        the version row is written in one transaction; if that fails, blobs this call
        created and nothing else uses are removed again.

        Without an input example or signature, the latest version's example is tried on
        the new model; if it predicts, the version keeps that signature.

        ``optimize=True`` converts a scikit-learn model to ONNX, checks that it agrees on
        the input example and ``reference_data`` (a DataFrame of inputs) within
        ``optimize.DEFAULT_TOLERANCE``, and serves whichever is faster; the report is
        recorded in the version's ``flavor_meta["optimize"]``.

        ``reference_data`` (the training inputs; the label and other columns the
        signature does not name are left out) also becomes the version's reference
        profile, the baseline of drift (``reference_source`` says where it came from;
        with ``reference_optional``, data that does not fit the signature is left out
        instead of failing the registration).

        ``feature_service`` binds the version to the feature service it was trained with
        (of the definitions' ``features_version``, the latest by default): every feature
        of the service must be an input of the signature, and the server looks them up
        for requests that carry only the entities' join keys.
        """
        validate_name(name)
        explicit = SemVer.parse(version) if version is not None else None
        if (model is None) == (path is None):
            raise InvalidInputError("register needs exactly one of a model object or a path")
        dataset_refs = [_dataset_ref(d) for d in datasets]
        clean_metrics = {check_key(k, "metric"): finite_number(f"metric {k!r}", v)
                         for k, v in (metrics or {}).items()}
        clean_params = {check_key(k, "param"): str(v) for k, v in (params or {}).items()}
        clean_tags = {check_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        trust = trust_pickle or self._trust_pickle
        with tempfile.TemporaryDirectory(prefix="modelhost-register-") as tmp:
            dest = Path(tmp) / "model"
            dest.mkdir()
            if path is not None:
                source = Path(path)
                if not source.exists():
                    raise FileNotFoundInputError(str(path))
                chosen = get_flavor(flavor) if flavor else flavor_for_path(source)
                saved = chosen.import_path(source, dest, trust_pickle=trust)
            else:
                chosen = get_flavor(flavor) if flavor else flavor_for_object(model)
                saved = chosen.save(model, dest)
            loaded = chosen.load(dest, saved.meta, trust_pickle=trust)
            example = input_example if input_example is not None else saved.input_example
            latest = self._models.latest_version(name)
            if example is None and signature is None and saved.signature is None:
                example, signature = _inherit(latest, loaded)
            signature = _signature_for(signature or saved.signature, example, loaded)
            flavor_name, meta = chosen.name, dict(saved.meta)
            if optimize:
                flavor_name, meta = self._optimize(chosen.name, meta, loaded, dest,
                                                   signature, example, reference_data)
            reference = None
            if reference_data is not None:
                from modelhost.registry.reference import reference_from_data  # pandas

                try:
                    reference = reference_from_data(loaded, signature, reference_data,
                                                    source=reference_source)
                except InvalidInputError as exc:
                    if not reference_optional:
                        raise
                    log.info("%s: registered without a reference profile (%s)", name, exc)
            choose = functools.partial(choose_version, name=name, signature=signature,
                                       explicit=explicit, force=force)
            if feature_service is not None:
                if self._bind_features is None:
                    raise InvalidInputError("this registry has no feature definitions")
                features_version = self._bind_features(feature_service, features_version,
                                                       signature)
            elif features_version is not None:
                raise InvalidInputError("features_version needs a feature_service")
            choose(latest)  # the rule, checked now; again inside the writing transaction
            self._models.check_lineage(run_id, dataset_refs)
            new = NewVersion(
                model=name, flavor=flavor_name, flavor_meta=meta,
                artifact_digest="", artifact_size=0, signature=signature,
                input_example=signatures.to_jsonable(example) if example is not None else None,
                lineage=Lineage(
                    run_id=run_id,
                    dataset_versions=tuple(f"{n}@{v}" for n, v in dataset_refs),
                    git_commit=git_commit or environment.git_commit(
                        Path(code_dir) if code_dir is not None else None),
                    python_version=environment.python_version(),
                    packages=environment.package_versions(),
                    feature_service=feature_service, features_version=features_version),
                metrics=clean_metrics, params=clean_params, tags=clean_tags,
                description=description, reference=reference)
            tree = self._artifacts.put_tree(dest)
            try:
                created = self._create(
                    dataclasses.replace(new, artifact_digest=tree.digest,
                                        artifact_size=tree.size),
                    choose, dataset_refs, explicit=explicit)
            except BaseException:
                self._artifacts.discard_unreferenced(tree.created_blobs,
                                                     in_use=self._references())
                raise
            # A concurrent registration that failed may have removed a blob it created
            # while this one relied on it; storing the tree again puts it back.
            if not all(self._artifacts.exists(d) for d in self._artifacts.tree_blobs(
                    tree.digest)):
                self._artifacts.put_tree(dest)
        return created

    @staticmethod
    def _optimize(flavor: str, meta: dict[str, Any], loaded: LoadedModel, dest: Path,
                  signature: Signature | None, example: Any, reference: Any
                  ) -> tuple[str, dict[str, Any]]:
        if flavor != "sklearn" or signature is None or example is None:
            raise InvalidInputError("optimize needs a scikit-learn model and an input example")
        import pandas as pd

        from modelhost.registry.optimize import try_onnx

        validator = signatures.InputValidator(signature)
        parts = [validator.validate(signatures.to_jsonable(data, max_rows=100_000))
                 for data in (example, reference) if data is not None]
        check = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        inner = getattr(loaded, "model", None)
        saved, _, report = try_onnx(inner, loaded, check, dest)
        if saved is None:
            return flavor, {**meta, "optimize": report.to_dict()}
        return "onnx", {**saved.meta, "optimize": report.to_dict(),
                        "optimized_from": {"flavor": flavor, "meta": meta}}

    def _create(self, new: NewVersion, choose: Callable[[ModelVersion | None], SemVer],
                dataset_refs: list[tuple[str, int]], *, explicit: SemVer | None
                ) -> ModelVersion:
        for attempt in range(_AUTO_BUMP_ATTEMPTS):
            try:
                return self._models.create_version(new, choose, dataset_refs=dataset_refs)
            except ConcurrentVersionError:
                # The number was taken by a concurrent registration: pick again, unless
                # the caller asked for exactly that number.
                if explicit is not None:
                    raise VersionExistsError(new.model, str(explicit)) from None
                if attempt == _AUTO_BUMP_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # --- read -----------------------------------------------------------------------

    def list_models(self) -> list[Model]:
        return self._models.list_models()

    def routing_revision(self) -> int:
        """A number that grows with every change of what is served (stage, alias, model
        tags, sunset, a new model): poll it, and read :meth:`routing_state` when it changed."""
        return self._models.routing_revision()

    def routing_state(self) -> RoutingState:
        """Every model's production version, aliases and tags, with their revision."""
        return self._models.routing_state()

    def get_model(self, name: str) -> Model:
        return self._models.get_model(validate_name(name))

    def list_versions(self, name: str, *, newest: int | None = None) -> list[ModelVersion]:
        """The model's versions, oldest first; only the ``newest`` ones when given."""
        return self._models.list_versions(validate_name(name), newest=newest)

    def count_versions(self, name: str) -> int:
        return self._models.count_versions(validate_name(name))

    def get_version(self, name: str, ref: str) -> ModelVersion:
        """A version by number, alias, ``latest`` or ``@stage``."""
        return self._models.resolve(validate_name(name), ref)

    def stage_history(self, name: str) -> list[StageChange]:
        return self._models.stage_history(validate_name(name))

    # --- change ---------------------------------------------------------------------

    def transition(self, name: str, ref: str, stage: Stage | str, *,
                   reason: str = "") -> list[StageChange]:
        target = _stage(stage)
        mv = self.get_version(name, ref)
        return self._models.transition(name, mv.version, target, reason=reason)

    def rollback(self, name: str, *, reason: str,
                 from_version: str | None = None) -> list[StageChange]:
        """Restore the previous production version and archive the current one (see
        :meth:`ModelStore.rollback`); audited as ``model.rollback``."""
        return self._models.rollback(validate_name(name), reason=reason,
                                     from_version=from_version)

    def set_alias(self, name: str, alias: str, ref: str) -> ModelVersion:
        validate_name(alias, "alias")
        if alias in _RESERVED_ALIASES or SemVer.looks_like(alias):
            raise ReservedAliasError(alias)
        mv = self.get_version(name, ref)
        return self._models.set_alias(name, alias, mv.version)

    def delete_alias(self, name: str, alias: str) -> None:
        self._models.delete_alias(validate_name(name), alias)

    def set_tags(self, name: str, tags: Mapping[str, str], *, version: str | None = None) -> None:
        if version is None:
            self._models.set_model_tags(validate_name(name), tags)
        else:
            mv = self.get_version(name, version)
            self._models.set_version_tags(name, mv.version, tags)

    def deprecate(self, name: str, ref: str, *, sunset: dt.date | str) -> ModelVersion:
        """Mark a version deprecated; after ``sunset`` it answers 410 Gone."""
        when = _parse_date(sunset)
        if when < self._today():
            raise InvalidInputError(
                f"sunset date {when.isoformat()} is in the past; give today or a later date")
        mv = self.get_version(name, ref)
        return self._models.set_sunset(name, mv.version, when)

    def is_past_sunset(self, mv: ModelVersion) -> bool:
        return mv.sunset is not None and self._today() > mv.sunset

    # --- reference profiles ---------------------------------------------------------

    def export(self, name: str, out: str | Path,
               versions: Sequence[str] | None = None) -> Exported:
        """Write the model's versions (all, or ``versions``) to the new archive ``out``,
        for :meth:`import_archive` in another registry (see ``transfer.py``)."""
        from modelhost.registry.transfer import Transfer

        return Transfer(self._models, self._artifacts, self._profiles).export(
            validate_name(name), Path(out), versions)

    def import_archive(self, path: str | Path) -> Imported:
        """Recreate an exported model's versions here, with their numbers and hashes,
        checked whole before anything is written; audited as ``model.import``."""
        from modelhost.registry.transfer import Transfer

        return Transfer(self._models, self._artifacts, self._profiles).import_archive(
            Path(path))

    def reference(self, name: str, ref: str) -> StoredReference | None:
        """The reference profile of a version, or None if it has none."""
        mv = self.get_version(name, ref)
        return self._profiles.reference(name, mv.version)

    def attach_reference(self, name: str, ref: str, data: Any, *,
                         source: str) -> StoredReference:
        """Build a version's reference profile from ``data`` (its training inputs) and
        save it, replacing any earlier one; audited. Checked before anything is saved."""
        from modelhost.registry.reference import reference_from_data  # pandas

        loaded = self.load(name, ref)
        mv = loaded.version
        new = reference_from_data(loaded.model, mv.signature, data, source=source)
        return self._profiles.attach_reference(name, mv.version, new)

    # --- card and load --------------------------------------------------------------

    def card(self, name: str, ref: str, *, format: str = "md") -> str:
        mv = self.get_version(name, ref)
        history = [c for c in self.stage_history(name) if c.version == mv.version]
        if format == "md":
            return card.render_markdown(mv, history)
        if format == "html":
            return card.render_html(mv, history)
        raise InvalidInputError(f"unknown card format {format!r}: use 'md' or 'html'")

    def predict(self, name: str, ref: str, inputs: Any) -> PredictionResult:
        """Load version ``ref`` of ``name`` and predict on ``inputs`` in-process (see
        :meth:`LoadedVersion.predict`)."""
        return self.load(name, ref).predict(inputs)

    def load(self, name: str, ref: str, *, trust_pickle: bool = False) -> LoadedVersion:
        """Fetch a version's artifact, verify every byte's sha256 and load the model."""
        mv = self.get_version(name, ref)
        flavor = get_flavor(mv.flavor)
        with tempfile.TemporaryDirectory(prefix="modelhost-load-") as tmp:
            dest = self._artifacts.get_tree(mv.artifact_digest, Path(tmp) / "model")
            model = flavor.load(dest, mv.flavor_meta,
                                trust_pickle=trust_pickle or self._trust_pickle)
        return LoadedVersion(version=mv, model=model, today=self._today)


def _signature_for(given: Signature | None, example: Any,
                   loaded: LoadedModel) -> Signature | None:
    """The signature to record, checked by predicting on the example once."""
    if example is None:
        return given
    signature = given or signatures.infer_signature(example)
    example_rows = signatures.to_jsonable(example, max_rows=5)
    frame = signatures.InputValidator(signature).validate(example_rows)
    try:
        predictions = loaded.predict(frame)
    except Exception as exc:  # a user model may raise anything; report, don't crash
        raise ModelLoadError("the model", f"predicting on the input example failed "
                             f"({first_line(exc)}); is it an example of this model's "
                             "input?") from exc
    rows = len(frame) if hasattr(frame, "__len__") else None
    if rows is not None and len(predictions) != rows:
        raise ModelLoadError("the model", f"it returned {len(predictions)} predictions "
                             f"for {rows} input rows")
    if not signature.outputs:
        signature = Signature(inputs=signature.inputs,
                              outputs=signatures.infer_signature(example, predictions).outputs)
    return signature


def _inherit(latest: ModelVersion | None, loaded: LoadedModel) -> tuple[Any, Signature | None]:
    """The latest version's example and signature, if the new model predicts on it."""
    if latest is None or latest.signature is None or latest.input_example is None:
        return None, None
    try:
        frame = signatures.InputValidator(latest.signature).validate(latest.input_example)
        loaded.predict(frame)
    except Exception:  # noqa: BLE001  # the new model simply has another contract
        return None, None
    return latest.input_example, latest.signature


def _dataset_ref(ref: DatasetVersion | str) -> tuple[str, int]:
    if isinstance(ref, DatasetVersion):
        return ref.name, ref.version
    name, sep, number = str(ref).partition("@")
    if not sep or not number.isdigit():
        raise InvalidInputError(f"dataset reference {ref!r} must look like 'name@3'")
    return validate_name(name, "dataset"), int(number)


def _stage(value: Stage | str) -> Stage:
    try:
        return value if isinstance(value, Stage) else Stage(str(value).lower())
    except ValueError:
        raise InvalidInputError(
            f"unknown stage {value!r}: use one of {', '.join(s.value for s in Stage)}"
        ) from None


def _parse_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"invalid date {value!r}: use YYYY-MM-DD") from None

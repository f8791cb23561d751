"""The composition root for Python users: one object that wires every service.

``Client()`` reads ``MODELHOST_*`` settings, opens the metadata database (migrating it
to the current schema) and the artifact store.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from pydantic import SecretStr

from modelhost.artifacts import ArtifactStore, open_artifact_store
from modelhost.batch import JobService
from modelhost.config import Settings
from modelhost.entities import Deployment, Model, ModelVersion, Stage, StageChange
from modelhost.errors import InvalidInputError
from modelhost.features.online import open_online_store
from modelhost.features.service import BoundVersion, Features
from modelhost.registry import LoadedVersion, PredictionResult, Registry
from modelhost.rollout.service import for_registry
from modelhost.security import ApiKeys
from modelhost.store import Database, DatasetStore, ModelStore, TrackingStore
from modelhost.store.alerts import AlertStore, LeaseStore
from modelhost.store.audit import AuditStore
from modelhost.store.deployments import DeploymentStore
from modelhost.store.features import FeatureRepoStore
from modelhost.store.jobs import JobStore
from modelhost.store.keys import KeyStore
from modelhost.store.monitoring import PredictionLogStore
from modelhost.store.profiles import ProfileStore
from modelhost.store.shadows import ShadowStore
from modelhost.tracking import Datasets, Tracker
from modelhost.tracking.datasets import read_version

if TYPE_CHECKING:
    from modelhost.remote import RemoteClient


def encrypted(store: ArtifactStore, key_text: SecretStr,
              old_keys: SecretStr | None) -> ArtifactStore:
    """``store`` sealing every blob with ``MODELHOST_ENCRYPTION_KEY`` (and opening those
    of ``MODELHOST_ENCRYPTION_OLD_KEYS`` too); the keys are checked here, before any use."""
    from modelhost.artifacts.encryption import EncryptedArtifactStore, parse_key

    key = parse_key(key_text.get_secret_value())
    old_text = old_keys.get_secret_value() if old_keys is not None else ""
    old = [parse_key(k, "each of MODELHOST_ENCRYPTION_OLD_KEYS")
           for k in old_text.split(",") if k.strip()]
    return EncryptedArtifactStore(store, key, old)


class Client:
    """Local access to the registry, runs and datasets; ``Client("http://host:8000",
    api_key=...)`` is a :class:`~modelhost.remote.RemoteClient` of a server instead.

    Args:
        settings: configuration; read from the environment when omitted.
        home: shortcut for ``Settings(home=...)``.
        migrate: apply pending database migrations now (the default).
        today: the clock used for sunset dates.
    """

    @overload
    def __new__(cls, settings: str, *, api_key: str | None = None,  # type: ignore[misc]
                timeout_s: float = 30.0, verify: Any = True) -> RemoteClient: ...

    @overload
    def __new__(cls, settings: Settings | None = None, *, home: str | Path | None = None,
                migrate: bool = True,
                today: Callable[[], dt.date] = dt.date.today) -> Client: ...

    def __new__(cls, settings: Any = None, **kwargs: Any) -> Any:
        if isinstance(settings, str):  # a server's address: the remote client
            from modelhost.remote import RemoteClient

            return RemoteClient(settings, **kwargs)
        return super().__new__(cls)

    def __init__(self, settings: Settings | None = None, *, home: str | Path | None = None,
                 migrate: bool = True,
                 today: Callable[[], dt.date] = dt.date.today) -> None:
        if settings is None:
            settings = Settings(home=Path(home)) if home is not None else Settings()
        self.settings = settings
        self.db = Database(settings.resolved_db_url, busy_timeout_s=settings.db_busy_timeout_s,
                           connect_timeout_s=settings.db_connect_timeout_s)
        self.artifacts: ArtifactStore = open_artifact_store(
            settings.resolved_artifacts, **_store_options(settings))
        if settings.encryption_key is not None:
            self.artifacts = encrypted(self.artifacts, settings.encryption_key,
                                       settings.encryption_old_keys)
        models, datasets, runs = ModelStore(self.db), DatasetStore(self.db), TrackingStore(self.db)
        jobs = JobStore(self.db)
        self.run_store, self.dataset_store = runs, datasets  # what the console reads

        def references() -> set[str]:
            return (models.artifact_digests() | datasets.digests() | runs.artifact_digests()
                    | jobs.digests())

        # Every artifact (tree) the metadata refers to: versions, datasets, run files,
        # jobs' inputs and results.
        self.artifacts_in_use = references

        self.profiles = ProfileStore(self.db)
        self.features = Features(FeatureRepoStore(self.db), open_online=functools.partial(
            open_online_store, settings.features_online, home=settings.home),
            bound=self._bound_versions,
            offline_db=settings.features_offline_db or settings.resolved_db_url)
        self.registry = Registry(models, self.artifacts, today=today,
                                 trust_pickle=settings.trust_pickle, references=references,
                                 profiles=self.profiles, bind_features=self.features.bind)
        self.datasets = Datasets(datasets, self.artifacts, references=references)
        self.tracking = Tracker(runs, datasets=self.datasets, registry=self.registry,
                                artifacts=self.artifacts, references=references)
        self.keys = ApiKeys(KeyStore(self.db))
        self.audit = AuditStore(self.db)
        self.predictions = PredictionLogStore(self.db)
        self.alert_store = AlertStore(self.db)
        self.leases = LeaseStore(self.db)
        self.deployments = DeploymentStore(self.db)
        self.shadows = ShadowStore(self.db)
        self.rollouts = for_registry(self.deployments, self.registry)

        self.jobs = JobService(jobs, self.registry, self.artifacts,
                               find_dataset=self.datasets.get,
                               read_dataset=functools.partial(read_version, self.datasets))
        if migrate:
            self.db.ensure_current()

    def _bound_versions(self) -> list[BoundVersion]:
        """Staged and production versions bound to a feature service."""
        found = []
        for model in self.registry.list_models():
            for mv in self.registry.list_versions(model.name):
                lineage = mv.lineage
                if (lineage.feature_service is not None and lineage.features_version
                        and mv.stage in (Stage.STAGING, Stage.PRODUCTION)):
                    found.append(BoundVersion(mv.model, mv.version, mv.stage.value,
                                              lineage.feature_service,
                                              lineage.features_version))
        return found

    # The most used registry operations, by the names MLflow users look for.

    def register_model(self, model: object = None, *, name: str, **kwargs: Any) -> ModelVersion:
        return self.registry.register(model, name=name, **kwargs)

    def list_models(self) -> list[Model]:
        return self.registry.list_models()

    def get_model_version(self, name: str, ref: str = "latest") -> ModelVersion:
        return self.registry.get_version(name, ref)

    def transition_stage(self, name: str, ref: str, stage: Stage | str, *,
                         reason: str = "") -> list[StageChange]:
        return self.registry.transition(name, ref, stage, reason=reason)

    def set_alias(self, name: str, alias: str, ref: str) -> ModelVersion:
        return self.registry.set_alias(name, alias, ref)

    def load_model(self, name: str, ref: str = "latest") -> LoadedVersion:
        return self.registry.load(name, ref)

    def predict(self, name: str, inputs: Any, *, version: str = "@production"
                ) -> PredictionResult:
        """Predict in-process with a registered version (by default the production one).

        ``inputs``: records, a dict of columns, a list of rows or a DataFrame. A version
        with a signature checks them against it; one without passes the columns to the
        model as given.
        """
        return self.registry.predict(name, version, inputs)

    def deploy(self, name: str, version: str, *, strategy: str = "canary",
               **options: Any) -> Deployment:
        """Start a rollout of ``version`` (a version, ``latest``, an alias, or a stage as
        ``@staging``) with
        ``strategy`` (``blue_green``, ``canary``, ``ab`` or ``shadow``) and its options
        (``steps=[10, 50, 100]``, ``split=0.2``, ``fraction=0.1``, ...: PRODUCT.md §3.7).
        """
        return self.rollouts.deploy(name, version, strategy, options)

    def close(self) -> None:
        self.features.close()
        self.db.dispose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _store_options(settings: Settings) -> dict[str, Any]:
    """``storage_options`` for an fsspec store from MODELHOST_ARTIFACTS_OPTIONS."""
    options = settings.artifact_storage_options
    if options is None:
        return {}
    uri = settings.resolved_artifacts
    if "://" not in uri or uri.lower().startswith("file://"):
        raise InvalidInputError(
            "MODELHOST_ARTIFACTS_OPTIONS is for an object store (s3://, gs://, az://); "
            "the artifact store is a local folder")
    return {"storage_options": options}

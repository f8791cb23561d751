"""Registry use cases: register, version (semver rules), stage, alias, card, lineage."""

from modelhost.registry.service import LoadedVersion, PredictionResult, Registry
from modelhost.registry.versioning import choose_version

__all__ = ["LoadedVersion", "PredictionResult", "Registry", "choose_version"]

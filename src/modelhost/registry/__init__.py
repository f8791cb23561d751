"""Registry use cases: register, version (semver rules), stage, alias, card, lineage,
and the scoring kernel every prediction path goes through."""

from modelhost.registry.scoring import Scorer
from modelhost.registry.service import LoadedVersion, PredictionResult, Registry
from modelhost.registry.versioning import choose_version

__all__ = ["LoadedVersion", "PredictionResult", "Registry", "Scorer", "choose_version"]

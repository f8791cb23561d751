"""Registry use cases: register, version (semver rules), stage, alias, card, lineage."""

from modelhost.registry.service import LoadedVersion, Registry
from modelhost.registry.versioning import choose_version

__all__ = ["LoadedVersion", "Registry", "choose_version"]

"""The semver rule of PRODUCT.md §1, as a pure function."""

from __future__ import annotations

from modelhost.entities import Bump, ModelVersion, SemVer, Signature
from modelhost.errors import SemverRuleError
from modelhost.signature import compare_signatures

FIRST_VERSION = SemVer(1, 0, 0)


def choose_version(latest: ModelVersion | None, *, name: str, signature: Signature | None,
                   explicit: SemVer | None, force: bool) -> SemVer:
    """The number of a new version of ``name``.

    With no explicit version, the latest one is bumped by as much as the signature
    change demands (MAJOR for a breaking change, MINOR for an additive one, PATCH for
    the same contract). An explicit version must be at least that far ahead of the
    latest one; ``force`` accepts it anyway (e.g. a backport). Raises SemverRuleError.
    """
    if latest is None:
        return explicit or FIRST_VERSION
    bump, reason = compare_signatures(latest.signature, signature)
    required = latest.semver.bump(bump)
    if explicit is None or force:
        return explicit or required
    if explicit < required:
        if explicit <= latest.semver:
            reason = f"it is not newer than the latest version {latest.version}"
        elif bump is not Bump.PATCH:
            reason = f"the signature {reason}"
        raise SemverRuleError(name, str(explicit), str(required), reason)
    return explicit

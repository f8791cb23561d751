from __future__ import annotations

import datetime as dt

import pytest

from modelhost.entities import (
    ColumnSpec,
    ColumnType,
    Lineage,
    ModelVersion,
    SemVer,
    Signature,
    Stage,
)
from modelhost.errors import InvalidVersionError, SemverRuleError
from modelhost.registry import choose_version

A = ColumnSpec("a", ColumnType.DOUBLE)
B = ColumnSpec("b", ColumnType.LONG)
B_OPTIONAL = ColumnSpec("b", ColumnType.LONG, required=False)


def _version(number: str, *inputs: ColumnSpec) -> ModelVersion:
    return ModelVersion(
        model="m", version=number, flavor="sklearn", stage=Stage.NONE, artifact_digest="0" * 64,
        artifact_size=1, signature=Signature(inputs=inputs), input_example=None, metrics={},
        params={}, lineage=Lineage(), flavor_meta={}, tags={}, aliases=(), description="",
        sunset=None, created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def choose(latest: ModelVersion | None, *inputs: ColumnSpec, explicit: str | None = None,
           force: bool = False) -> str:
    return str(choose_version(latest, name="m", signature=Signature(inputs=inputs),
                              explicit=SemVer.parse(explicit) if explicit else None,
                              force=force))


def test_first_version_is_1_0_0_or_the_explicit_one() -> None:
    assert choose(None, A) == "1.0.0"
    assert choose(None, A, explicit="0.3.0") == "0.3.0"


@pytest.mark.parametrize(("new_inputs", "expected"), [
    ((A, B), "1.2.4"),               # same contract: PATCH
    ((A, B, ColumnSpec("c", ColumnType.STRING, required=False)), "1.3.0"),  # optional: MINOR
    ((A,), "2.0.0"),                 # drops a column: MAJOR
    ((A, ColumnSpec("b", ColumnType.STRING)), "2.0.0"),  # retypes: MAJOR
    ((A, B, ColumnSpec("c", ColumnType.STRING)), "2.0.0"),  # adds a required input: MAJOR
])
def test_auto_bump_follows_the_signature(new_inputs: tuple[ColumnSpec, ...],
                                         expected: str) -> None:
    assert choose(_version("1.2.3", A, B), *new_inputs) == expected


def test_explicit_version_must_be_far_enough_ahead() -> None:
    latest = _version("1.2.3", A, B)
    assert choose(latest, A, explicit="2.0.0") == "2.0.0"
    assert choose(latest, A, B, explicit="1.5.0") == "1.5.0"
    with pytest.raises(SemverRuleError, match=r"needs at least version 2\.0\.0"):
        choose(latest, A, explicit="1.3.0")
    with pytest.raises(SemverRuleError, match=r"not newer than the latest version 1\.2\.3"):
        choose(latest, A, B, explicit="1.2.3")
    assert choose(latest, A, explicit="1.3.0", force=True) == "1.3.0"


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "01.2.3", "1.2.3-rc1", "", " ", "1..3",
                                 "1.2.3.4", "１.2.3"])
def test_invalid_versions_are_refused(bad: str) -> None:
    with pytest.raises(InvalidVersionError):
        SemVer.parse(bad)


def test_optional_to_required_is_major_and_the_reverse_is_minor() -> None:
    assert choose(_version("1.0.0", A, B_OPTIONAL), A, B) == "2.0.0"
    assert choose(_version("1.0.0", A, B), A, B_OPTIONAL) == "1.1.0"

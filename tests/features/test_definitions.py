"""Feature definitions: the YAML a Feast user would write, and clear refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from modelhost.entities import ColumnType
from modelhost.errors import InvalidInputError
from modelhost.features import parse_repo, parse_ttl

REPO = """
entities:
  - name: customer
    join_keys: [customer_id]
feature_views:
  - name: customer_stats
    entities: [customer]
    ttl: 1d12h
    schema:
      - {name: orders_7d, dtype: long}
      - {name: spend_30d, dtype: double, default: 0.0}
    source: {path: data/customer_stats.parquet, timestamp_field: ts}
    on_missing: default
feature_services:
  - name: churn_v1
    features: [customer_stats:orders_7d, customer_stats:spend_30d]
"""


def test_a_repository_reads_as_feast_users_write_it() -> None:
    repo = parse_repo(REPO)
    view = repo.views["customer_stats"]
    assert view.ttl == dt.timedelta(hours=36) and view.on_missing == "default"
    assert view.source.timestamp_field == "ts" and view.source.created_timestamp_column is None
    assert [(f.name, f.dtype, f.default) for f in view.schema] == [
        ("orders_7d", ColumnType.LONG, None), ("spend_30d", ColumnType.DOUBLE, 0.0)]
    assert repo.join_keys(view) == ("customer_id",)
    assert [(v.name, f.name) for v, f in repo.service_features("churn_v1")] == [
        ("customer_stats", "orders_7d"), ("customer_stats", "spend_30d")]


@pytest.mark.parametrize(("value", "expected"), [
    ("2d", dt.timedelta(days=2)), ("12h", dt.timedelta(hours=12)),
    ("1d12h", dt.timedelta(hours=36)), ("90s", dt.timedelta(seconds=90)),
    ("1w", dt.timedelta(days=7)), (3600, dt.timedelta(hours=1)), ("0", None), (None, None),
    ("none", None), (dt.timedelta(minutes=5), dt.timedelta(minutes=5))])
def test_ttls(value: object, expected: dt.timedelta | None) -> None:
    assert parse_ttl(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["2 days", "d2", "1x", "-1h", -5, True, "12h garbage"])
def test_a_ttl_that_does_not_parse_is_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match="TTL"):
        parse_ttl(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "words"), [
    (("ttl: 1d12h", "ttl: soon"), r"feature_views\[0\]\.ttl"),
    (("entities: [customer]", "entities: [account]"), "entity 'account'"),
    (("dtype: long", "dtype: int128"), r"schema\[0\]\.dtype must be one of"),
    (("customer_stats:orders_7d", "customer_stats:orders_1d"), "no feature 'orders_1d'"),
    (("customer_stats:spend_30d", "stats:spend_30d"), "feature view 'stats'"),
    (("on_missing: default", "on_missing: guess"), "reject or default"),
    (("{name: spend_30d", "{name: orders_7d"), "orders_7d used twice"),
    (("{name: spend_30d", "{name: customer_id"), "customer_id used twice"),
    (("path: data/customer_stats.parquet, ", ""), "source needs one of path"),
    (("    on_missing: default", "    colour: blue"), "unknown field"),
    (("name: churn_v1", "name: 1churn"), "name of letters"),
])
def test_mistakes_are_refused_naming_the_entry(change: tuple[str, str], words: str) -> None:
    old, new = change
    assert old in REPO
    with pytest.raises(InvalidInputError, match=words):
        parse_repo(REPO.replace(old, new))


def test_not_a_repository() -> None:
    for text, words in [("[1, 2]", "a mapping"), ("entities: {a: 1}", "entities is a list"),
                        ("entities: [", "not valid YAML"), ("views: []", "unknown field")]:
        with pytest.raises(InvalidInputError, match=words):
            parse_repo(text)
    with pytest.raises(InvalidInputError, match="no feature service 'nope'"):
        parse_repo(REPO).service_features("nope")

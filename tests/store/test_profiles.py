"""ProfileStore: reference profiles (saved at registration in the version's transaction,
attached later, replaced, audited) and live profile windows (one row per worker, window
and reference digest, upserted whole; read by width and time; pruned); on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import numpy as np
import pytest
from tests.fixtures_models import iris, iris_example, iris_model

from modelhost import Client
from modelhost.entities import Lineage, SemVer
from modelhost.errors import InvalidVersionError, ModelNotFoundError, VersionNotFoundError
from modelhost.stats.profile import Reference, build_reference
from modelhost.store import Database, ModelStore, NewVersion
from modelhost.store.audit import AuditStore
from modelhost.store.profiles import (
    HOUR_S,
    MINUTE_S,
    NewReference,
    ProfileStore,
    WindowCounts,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def models(db: Database) -> ModelStore:
    return ModelStore(db)


@pytest.fixture
def profiles(db: Database) -> ProfileStore:
    return ProfileStore(db)


def _new_reference(seed: int, *, source: str = "train.csv") -> NewReference:
    rng = np.random.default_rng(seed)
    reference = build_reference(
        {"x": rng.normal(0.0, 1.0, 200), "c": rng.choice(["a", "b", "c"], 200)},
        rng.choice([0, 1], 200), categorical_predictions=True)
    return NewReference(profile=reference.to_dict(), digest=reference.digest, source=source,
                        rows=reference.rows)


def _register(models: ModelStore, name: str = "churn", version: str = "1.0.0", *,
              reference: NewReference | None = None) -> None:
    number = SemVer.parse(version)
    models.create_version(
        NewVersion(model=name, flavor="python", flavor_meta={}, artifact_digest="0" * 64,
                   artifact_size=1, signature=None, input_example=None, lineage=Lineage(),
                   reference=reference),
        lambda latest: number)


# --- references ---------------------------------------------------------------------------


def test_a_version_has_no_reference_until_one_is_attached(models: ModelStore,
                                                          profiles: ProfileStore) -> None:
    _register(models)
    assert profiles.reference("churn", "1.0.0") is None
    new = _new_reference(1)
    before = dt.datetime.now(UTC)
    saved = profiles.attach_reference("churn", "1.0.0", new)
    read = profiles.reference("churn", "1.0.0")
    assert read == saved
    assert (read.model, read.version, read.digest, read.source, read.rows) == (
        "churn", "1.0.0", new.digest, "train.csv", 200)
    # The profile comes back as it was given: the same reference, the same layout digest.
    assert read.profile == new.profile
    assert Reference.from_dict(read.profile).digest == new.digest
    assert read.created_at.tzinfo is not None
    assert before - dt.timedelta(seconds=1) <= read.created_at <= dt.datetime.now(UTC)


def test_attaching_again_replaces_the_reference_and_audits_both(
        db: Database, models: ModelStore, profiles: ProfileStore) -> None:
    _register(models, version="1.0.0")
    _register(models, version="1.0.1")
    first, second = _new_reference(1), _new_reference(2, source="fresh.parquet")
    assert first.digest != second.digest
    profiles.attach_reference("churn", "1.0.0", first)
    profiles.attach_reference("churn", "1.0.0", second)
    current = profiles.reference("churn", "1.0.0")
    assert current is not None
    assert (current.digest, current.source) == (second.digest, "fresh.parquet")
    assert current.profile == second.profile
    assert profiles.reference("churn", "1.0.1") is None  # the other version: untouched
    audit = AuditStore(db)
    entries = list(reversed(audit.list(action="model.reference")))
    assert [e.target for e in entries] == ["churn:1.0.0", "churn:1.0.0"]
    assert entries[0].before is None
    assert entries[0].after == {"digest": first.digest, "source": "train.csv", "rows": 200}
    assert entries[1].before == {"digest": first.digest, "source": "train.csv"}
    assert entries[1].after == {"digest": second.digest, "source": "fresh.parquet",
                                "rows": 200}
    assert audit.verify().ok


@pytest.mark.parametrize(("model", "version", "error"), [
    ("nope", "1.0.0", ModelNotFoundError),
    ("churn", "9.9.9", VersionNotFoundError),
    ("churn", "latest-ish", InvalidVersionError),
])
def test_unknown_models_and_versions_are_refused_and_nothing_is_written(
        db: Database, models: ModelStore, profiles: ProfileStore, model: str, version: str,
        error: type[Exception]) -> None:
    _register(models)
    entries = AuditStore(db).verify().entries
    with pytest.raises(error):
        profiles.reference(model, version)
    with pytest.raises(error):
        profiles.attach_reference(model, version, _new_reference(1))
    assert AuditStore(db).verify().entries == entries
    assert profiles.reference("churn", "1.0.0") is None


def test_a_registration_saves_its_reference_with_the_version(models: ModelStore,
                                                              profiles: ProfileStore) -> None:
    new = _new_reference(3, source="the data given at registration")
    _register(models, reference=new)
    saved = profiles.reference("churn", "1.0.0")
    assert saved is not None and saved.digest == new.digest and saved.profile == new.profile


def test_a_reference_that_cannot_be_saved_takes_the_version_with_it(
        db: Database, models: ModelStore, profiles: ProfileStore) -> None:
    """One transaction: the version is not registered without its reference."""
    unstorable = NewReference(profile={"not json": object()}, digest="0123456789abcdef",
                              source="x", rows=1)
    with pytest.raises(Exception, match="not JSON serializable"):
        _register(models, reference=unstorable)
    assert models.list_models() == []
    assert AuditStore(db).verify().entries == 0
    _register(models)  # the same number is still free
    assert profiles.reference("churn", "1.0.0") is None


def test_registering_with_reference_data_profiles_it(client: Client) -> None:
    X, _ = iris()
    client.registry.register(iris_model(), name="iris", input_example=iris_example(),
                             reference_data=X)
    client.registry.register(iris_model(C=0.01), name="iris", input_example=iris_example())
    stored = client.profiles.reference("iris", "1.0.0")
    assert stored is not None
    assert (stored.rows, stored.source) == (150, "the data given at registration")
    reference = Reference.from_dict(stored.profile)
    assert [f.name for f in reference.features] == list(X.columns)
    assert reference.prediction is not None and reference.prediction.kind == "categorical"
    assert stored.digest == reference.digest
    assert client.profiles.reference("iris", "1.0.1") is None
    assert client.audit.list(action="model.reference") == []  # part of model.register


# --- live windows -------------------------------------------------------------------------


def _vector(*values: float) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def _window(start: dt.datetime, *values: float, width: int = MINUTE_S,
            worker: str = "w1", digest: str = "d1", model: str = "churn",
            version: str = "1.0.0") -> WindowCounts:
    return WindowCounts(model=model, version=version, width_s=width, start=start,
                        worker=worker, digest=digest, counts=_vector(*values))


def _read(profiles: ProfileStore, *, width: int = MINUTE_S,
          start: dt.datetime = T0 - 24 * HOUR, end: dt.datetime = T0 + 24 * HOUR,
          model: str = "churn", version: str = "1.0.0",
          ) -> list[tuple[dt.datetime, str, list[float]]]:
    return [(at, digest, np.frombuffer(raw, dtype="<f8").tolist())
            for at, digest, raw in profiles.windows(model, version, width_s=width,
                                                    start=start, end=end)]


def test_writing_the_same_window_again_keeps_the_second_vector(
        profiles: ProfileStore) -> None:
    profiles.write_windows([_window(T0, 1.0, 2.0, 3.0)])
    profiles.write_windows([_window(T0, 4.0, 5.0, 6.5)])  # the same key: replaced
    rows = _read(profiles)
    assert rows == [(T0, "d1", [4.0, 5.0, 6.5])]
    assert rows[0][0].utcoffset() == dt.timedelta(0)


def test_workers_digests_and_widths_make_separate_rows(profiles: ProfileStore) -> None:
    profiles.write_windows([
        _window(T0, 1.0, worker="w1"), _window(T0, 2.0, worker="w2"),
        _window(T0, 4.0, worker="w1", digest="d2"),
        _window(T0, 8.0, width=HOUR_S),
        _window(T0, 16.0, version="1.0.1"), _window(T0, 32.0, model="other"),
    ])
    profiles.write_windows([_window(T0, 3.0, worker="w2")])  # only w2's row changes
    minute = _read(profiles)
    assert sorted((digest, v[0]) for _, digest, v in minute) == [
        ("d1", 1.0), ("d1", 3.0), ("d2", 4.0)]
    assert [v for _, _, v in _read(profiles, width=HOUR_S)] == [[8.0]]
    assert [v for _, _, v in _read(profiles, version="1.0.1")] == [[16.0]]
    assert [v for _, _, v in _read(profiles, model="other")] == [[32.0]]
    assert _read(profiles, version="2.0.0") == []


def test_one_write_stores_many_windows_and_an_empty_one_writes_nothing(
        profiles: ProfileStore) -> None:
    profiles.write_windows([])
    many = [_window(T0 + i * MINUTE, float(i), worker=f"w{i % 3}") for i in range(300)]
    profiles.write_windows(many)
    profiles.write_windows(many[:10])  # a retried write: the same rows, not more
    rows = _read(profiles)
    assert len(rows) == 300
    assert sum(v[0] for _, _, v in rows) == sum(range(300))


def test_windows_are_read_by_width_and_start_in_a_half_open_range_oldest_first(
        profiles: ProfileStore) -> None:
    starts = [T0 + i * MINUTE for i in range(10)]
    shuffled = list(enumerate(starts))
    random.Random(4).shuffle(shuffled)
    profiles.write_windows([_window(at, float(i)) for i, at in shuffled])
    profiles.write_windows([_window(T0 + 2 * MINUTE, 99.0, width=HOUR_S)])
    rows = _read(profiles, start=starts[2], end=starts[6])
    assert [(at, v) for at, _, v in rows] == [(starts[i], [float(i)]) for i in range(2, 6)]
    assert _read(profiles, start=starts[3], end=starts[3]) == []
    assert _read(profiles, start=T0 + 30 * MINUTE, end=T0 + HOUR) == []


def test_times_in_another_zone_mean_the_same_instants(request: pytest.FixtureRequest,
                                                       profiles: ProfileStore) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    profiles.write_windows([_window((T0 + i * MINUTE).astimezone(plus_two), float(i))
                            for i in range(4)])
    expected = [(T0 + i * MINUTE, "d1", [float(i)]) for i in range(1, 3)]
    assert _read(profiles, start=T0 + MINUTE, end=T0 + 3 * MINUTE) == expected
    assert _read(profiles, start=(T0 + MINUTE).astimezone(plus_two),
                 end=(T0 + 3 * MINUTE).astimezone(plus_two)) == expected


def test_prune_deletes_minute_and_hour_windows_before_their_own_limits(
        profiles: ProfileStore) -> None:
    profiles.write_windows(
        [_window(T0 + i * MINUTE, float(i)) for i in range(5)]
        + [_window(T0 + i * HOUR, float(i), width=HOUR_S) for i in range(5)]
        + [_window(T0, 7.0, worker="w2"), _window(T0, 7.0, model="other")])
    deleted = profiles.prune(minutes_before=T0 + 2 * MINUTE, hours_before=T0 + 3 * HOUR)
    # Minutes 0 and 1 (three workers' or models' rows at minute 0), hours 0, 1 and 2.
    assert deleted == 4 + 3
    assert [at for at, _, _ in _read(profiles)] == [T0 + i * MINUTE for i in range(2, 5)]
    assert [at for at, _, _ in _read(profiles, width=HOUR_S)] == [T0 + 3 * HOUR,
                                                                  T0 + 4 * HOUR]
    assert _read(profiles, model="other") == []
    assert profiles.prune(minutes_before=T0 + 2 * MINUTE, hours_before=T0 + 3 * HOUR) == 0



def test_headers_are_the_first_bytes_of_every_models_windows(profiles: ProfileStore) -> None:
    profiles.write_windows([
        _window(T0, 1.0, 2.0, 3.0), _window(T0 + MINUTE, 4.0, 5.0, 6.0, worker="w2"),
        _window(T0, 7.0, 8.0, 9.0, model="other"),
        _window(T0, 10.0, 11.0, width=HOUR_S),  # another width
        _window(T0 + 5 * MINUTE, 12.0, 13.0),  # after the range
    ])
    found = sorted((model, version, np.frombuffer(head, dtype="<f8").tolist())
                   for model, version, head in profiles.headers(
                       width_s=MINUTE_S, start=T0, end=T0 + 5 * MINUTE, size=16))
    assert found == [("churn", "1.0.0", [1.0, 2.0]), ("churn", "1.0.0", [4.0, 5.0]),
                     ("other", "1.0.0", [7.0, 8.0])]

"""API keys: random, shown once, stored hashed, same refusal for every bad key."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from modelhost import Client
from modelhost._utils import utcnow
from modelhost.errors import InvalidInputError, UnauthorizedError
from modelhost.security import ApiKeys, Role
from modelhost.security import keys as keys_module
from modelhost.store.keys import KeyNotFoundError, KeyStore


def test_a_key_is_random_shown_once_and_stored_only_as_a_hash(client: Client) -> None:
    first = client.keys.create(name="ci", role="deployer")
    second = client.keys.create(name="ci", role="deployer")
    assert first.secret != second.secret and first.key.id != second.key.id
    assert first.secret.startswith(f"mh_{first.key.id}_") and len(first.secret) == 59
    with client.db.engine.connect() as conn:
        dump = " ".join(str(row) for table in ("api_keys", "audit_log")
                        for row in conn.execute(text(f"SELECT * FROM {table}")))
    assert first.secret not in dump and first.secret[16:] not in dump
    assert "secret" not in str(client.keys.list()[0].to_dict())


def test_authenticate_gives_the_principal(client: Client) -> None:
    created = client.keys.create(name="scorer", role="predictor", models=["iris"],
                                 rate_limit=5)
    principal = client.keys.authenticate(created.secret)
    assert principal.role is Role.PREDICTOR and principal.models == ("iris",)
    assert principal.rate_limit == 5 and principal.actor == f"key:{created.key.id} (scorer)"


@pytest.mark.parametrize("mangle", [
    lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),   # wrong secret, real id
    lambda s: "mh_000000000000_" + s.split("_", 2)[2],    # unknown id
    lambda s: "mh_" + s[3:15],                            # malformed
    lambda s: "",                                         # empty
    lambda s: s + " ",                                    # trailing junk
])
def test_every_bad_key_gets_the_same_refusal(client: Client, mangle: object) -> None:
    created = client.keys.create(name="ci", role="admin")
    with pytest.raises(UnauthorizedError) as refused:
        client.keys.authenticate(mangle(created.secret))  # type: ignore[operator]
    assert refused.value.message == UnauthorizedError().message


def test_unknown_and_wrong_keys_do_the_same_work(client: Client,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One lookup and one constant-time comparison each: no timing difference from an
    early return."""
    created = client.keys.create(name="ci", role="admin")
    calls: list[str] = []
    real_compare = keys_module.hmac.compare_digest
    store = KeyStore(client.db)
    real_find = store.find

    def compare(a: str, b: str) -> bool:
        calls.append("compare")
        return real_compare(a, b)

    def find(key_id: str) -> object:
        calls.append("find")
        return real_find(key_id)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", compare)
    monkeypatch.setattr(store, "find", find)
    service = ApiKeys(store)
    for token in (created.secret[:-2] + "xx", "mh_0123456789ab_" + "x" * 43):
        calls.clear()
        with pytest.raises(UnauthorizedError):
            service.authenticate(token)
        assert calls == ["find", "compare"]


def test_expired_and_revoked_keys_stop_working(client: Client) -> None:
    soon = client.keys.create(name="short", role="viewer",
                              expires_at=utcnow() + dt.timedelta(seconds=1))
    later = client.keys.create(name="long", role="viewer")
    fresh = ApiKeys(KeyStore(client.db), cache_ttl_s=0)
    fresh.authenticate(soon.secret)
    with client.db.engine.begin() as conn:  # let it expire without sleeping
        conn.execute(text("UPDATE api_keys SET expires_at = :t WHERE id = :i"),
                     {"t": utcnow() - dt.timedelta(seconds=1), "i": soon.key.id})
    with pytest.raises(UnauthorizedError):
        fresh.authenticate(soon.secret)
    client.keys.authenticate(later.secret)
    client.keys.revoke(later.key.id)
    with pytest.raises(UnauthorizedError):  # at once in the revoking process
        client.keys.authenticate(later.secret)
    assert [k.id for k in client.keys.list()] == [soon.key.id]
    assert {k.id for k in client.keys.list(include_revoked=True)} == {soon.key.id, later.key.id}
    actions = [e.action for e in client.audit.list()]
    assert actions[:1] == ["key.revoke"] and actions.count("key.create") == 2


def test_last_use_is_recorded(client: Client) -> None:
    created = client.keys.create(name="ci", role="viewer")
    client.keys.authenticate(created.secret)
    client.keys.flush_usage(force=True)
    assert client.keys.list()[0].last_used_at is not None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"role": "root"}, "unknown role"),
    ({"role": "viewer", "models": ["iris"]}, "only predictor keys"),
    ({"role": "predictor", "models": ["../etc"]}, "model"),
    ({"role": "viewer", "name": ""}, "key name"),
    ({"role": "viewer", "name": "bad\x00name"}, "key name"),
    ({"role": "viewer", "expires_at": dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)},
     "future"),
    ({"role": "viewer", "rate_limit": 0}, "rate limit"),
])
def test_bad_key_requests_are_refused_and_change_nothing(
        client: Client, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"name": "x", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        client.keys.create(**arguments)  # type: ignore[arg-type]
    assert client.keys.list(include_revoked=True) == []
    assert client.audit.verify().entries == 0


def test_revoking_an_unknown_key(client: Client) -> None:
    with pytest.raises(KeyNotFoundError):
        client.keys.revoke("000000000000")

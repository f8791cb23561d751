"""Console sessions made from API keys: ``<key id>.<expiry>.<HMAC>`` signed with the
server's console secret and the key's stored hash. A round trip gives the key's principal
back; a forged (even from a copy of the database), tampered, foreign or malformed token,
an expired session, a revoked or expired key are all refused the same way; the token
reveals neither the key nor its hash; CSRF tokens match only their own session."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from modelhost import Client
from modelhost._utils import utcnow
from modelhost.errors import UnauthorizedError
from modelhost.security import Role
from modelhost.security.keys import hash_secret
from modelhost.security.sessions import (
    Session,
    Sessions,
    csrf_matches,
    load_or_create_secret,
    tokens_match,
)

SECRET = b"a test console secret of 32 byte"


@pytest.fixture
def sessions(client: Client) -> Sessions:
    return Sessions(client.keys, secret=SECRET)


def refused(sessions: Sessions, token: str | None) -> None:
    with pytest.raises(UnauthorizedError) as caught:
        sessions.check(token)
    assert caught.value.message == UnauthorizedError().message


def parts(session: Session) -> tuple[str, str, str]:
    key_id, stamp, signature = session.token.split(".")
    return key_id, stamp, signature


def test_a_session_round_trips_to_its_keys_principal(client: Client,
                                                     sessions: Sessions) -> None:
    created = client.keys.create(name="ops", role="deployer")
    before = utcnow()
    session = sessions.sign_in(f"  {created.secret}\n")  # pasted with blanks around
    after = utcnow()

    assert session.principal.key_id == created.key.id
    assert session.principal.name == "ops" and session.principal.role is Role.DEPLOYER
    assert session.principal.actor == f"key:{created.key.id} (ops)"
    assert before + dt.timedelta(hours=8) - dt.timedelta(seconds=1) <= session.expires_at
    assert session.expires_at <= after + dt.timedelta(hours=8)
    key_id, stamp, signature = parts(session)
    assert key_id == created.key.id and int(stamp) == int(session.expires_at.timestamp())
    assert len(signature) == 64 and len(session.csrf) == 64 and session.csrf != signature

    checked = sessions.check(session.token)
    assert checked.principal == session.principal
    assert checked.token == session.token and checked.csrf == session.csrf
    assert checked.expires_at == dt.datetime.fromtimestamp(int(stamp), dt.timezone.utc)
    # Another Sessions over the same keys (another worker or replica) accepts it too.
    assert Sessions(client.keys, secret=SECRET).check(session.token).principal == session.principal


def test_a_session_is_refused_for_a_bad_key(client: Client, sessions: Sessions) -> None:
    created = client.keys.create(name="ops", role="viewer")
    for bad in ("", "   ", created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B"),
                "mh_000000000000_" + "x" * 43):
        with pytest.raises(UnauthorizedError):
            sessions.sign_in(bad)


def test_a_forged_signature_is_refused(client: Client, sessions: Sessions) -> None:
    created = client.keys.create(name="ops", role="admin")
    key_id, stamp, signature = parts(sessions.sign_in(created.secret))
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    refused(sessions, f"{key_id}.{stamp}.{flipped}")
    refused(sessions, f"{key_id}.{stamp}.{'0' * 64}")
    # Signed with what a browser could know (the id, the key) or with what a copy of the
    # database holds (the key's stored hash, alone or as the old scheme used it).
    message = f"modelhost-console:session:{key_id}:{stamp}".encode()
    stored = client.keys.find(key_id)
    assert stored is not None
    for guess in (created.secret, key_id, "", stored[1]):
        forged = hmac.new(guess.encode(), message, hashlib.sha256).hexdigest()
        refused(sessions, f"{key_id}.{stamp}.{forged}")
        derived = hmac.new(guess.encode(), stored[1].encode(), hashlib.sha256).digest()
        refused(sessions, f"{key_id}.{stamp}."
                          f"{hmac.new(derived, message, hashlib.sha256).hexdigest()}")
    # The CSRF token is not a session signature.
    csrf = sessions.check(f"{key_id}.{stamp}.{signature}").csrf
    refused(sessions, f"{key_id}.{stamp}.{csrf}")


def test_a_tampered_expiry_is_refused(client: Client, sessions: Sessions) -> None:
    created = client.keys.create(name="ops", role="admin")
    key_id, stamp, signature = parts(sessions.sign_in(created.secret))
    for other in (int(stamp) + 1, int(stamp) + 86_400 * 365, int(stamp) - 1):
        refused(sessions, f"{key_id}.{other}.{signature}")
    refused(sessions, f"{key_id}.{int(stamp) + 10 ** 11}.{signature}")  # 12 digits


def test_another_keys_id_is_refused(client: Client, sessions: Sessions) -> None:
    viewer = client.keys.create(name="look", role="viewer")
    admin = client.keys.create(name="boss", role="admin")
    _, stamp, signature = parts(sessions.sign_in(viewer.secret))
    refused(sessions, f"{admin.key.id}.{stamp}.{signature}")
    refused(sessions, f"000000000000.{stamp}.{signature}")  # no such key


@pytest.mark.parametrize("token", [
    None, "", ".", "..", "abc", "a.b.c",
    "0123456789ab.1.",                                   # no signature
    "0123456789ab..{sig}",                                 # no expiry
    ".99999999999.{sig}",                                  # no id
    "0123456789AB.99999999999.{sig}",                      # upper-case id
    "0123456789ab.99999999999.{SIG}",                      # upper-case signature
    "0123456789ab.99999999999.{sig}.extra",                # a fourth part
    " 0123456789ab.99999999999.{sig}",                     # blanks around
    "0123456789ab.99999999999.{sig}\n",
    "0123456789ab.-1.{sig}",                               # a negative expiry
    "0123456789ab.9999999999999.{sig}",                    # 13 digits
    "0123456789ab.99999999999.{short}",                    # 63 hex digits
    "0123456789abc.99999999999.{sig}",                     # a 13-character id
    "mh_0123456789ab_" + "x" * 43,                         # an API key is not a session
    "0123456789ab.99999999999.{sig}" + "\x00",
    "0123456789ab.٩٩٩٩.{sig}",                             # non-ASCII digits
])
def test_malformed_tokens_are_refused(client: Client, sessions: Sessions,
                                      token: str | None) -> None:
    client.keys.create(name="ops", role="admin")
    if token is not None:
        token = token.format(sig="a" * 64, SIG="A" * 64, short="a" * 63)
    refused(sessions, token)


def test_a_malformed_token_naming_a_real_key_is_refused(client: Client,
                                                        sessions: Sessions) -> None:
    created = client.keys.create(name="ops", role="admin")
    key_id, stamp, signature = parts(sessions.sign_in(created.secret))
    for token in (f"{key_id}.{stamp}", f"{key_id}.{stamp}.{signature}.{signature}",
                  f"{key_id}.{stamp}.{signature.upper()}", f"{key_id}..{signature}",
                  f"{key_id}.{stamp}.{signature[:-1]}", f"{key_id.upper()}.{stamp}.{signature}",
                  f" {key_id}.{stamp}.{signature}", f"{key_id}.{stamp}.{signature} ",
                  created.secret):
        refused(sessions, token)


def test_a_valid_token_with_a_trailing_newline_is_refused(client: Client,
                                                          sessions: Sessions) -> None:
    """The token's pattern must match all of it: ``$`` also matches before a final
    newline."""
    created = client.keys.create(name="ops", role="admin")
    session = sessions.sign_in(created.secret)
    refused(sessions, session.token + "\n")


def test_an_expired_session_is_refused(client: Client) -> None:
    created = client.keys.create(name="ops", role="admin")
    already = Sessions(client.keys, secret=SECRET, ttl=dt.timedelta(seconds=-1))
    session = already.sign_in(created.secret)
    assert session.expires_at < utcnow()
    refused(already, session.token)
    refused(Sessions(client.keys, secret=SECRET), session.token)  # whatever the checker's own ttl


def test_revoking_a_key_ends_its_sessions(client: Client, sessions: Sessions) -> None:
    doomed = client.keys.create(name="doomed", role="admin")
    kept = client.keys.create(name="kept", role="admin")
    first, second = sessions.sign_in(doomed.secret), sessions.sign_in(doomed.secret)
    other = sessions.sign_in(kept.secret)
    sessions.check(first.token)
    client.keys.revoke(doomed.key.id)
    refused(sessions, first.token)
    refused(sessions, second.token)
    # In every process: the key is read on each check.
    refused(Sessions(client.keys, secret=SECRET), first.token)
    assert sessions.check(other.token).principal.key_id == kept.key.id
    with pytest.raises(UnauthorizedError):
        sessions.sign_in(doomed.secret)


def test_a_keys_expiry_caps_its_sessions(client: Client, sessions: Sessions) -> None:
    ends = utcnow() + dt.timedelta(minutes=30)
    created = client.keys.create(name="short", role="viewer", expires_at=ends)
    session = sessions.sign_in(created.secret)
    assert session.expires_at == ends  # not 8 hours
    assert int(parts(session)[1]) == int(ends.timestamp())
    assert sessions.check(session.token).expires_at <= ends
    # The key expires (without sleeping): its session ends with it.
    with client.db.engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET expires_at = :t WHERE id = :i"),
                     {"t": utcnow() - dt.timedelta(seconds=1), "i": created.key.id})
    refused(sessions, session.token)
    # A key that outlives the session: the session's own ttl wins.
    long = client.keys.create(name="long", role="viewer",
                              expires_at=utcnow() + dt.timedelta(days=30))
    brief = Sessions(client.keys, secret=SECRET, ttl=dt.timedelta(minutes=5)).sign_in(long.secret)
    assert brief.expires_at <= utcnow() + dt.timedelta(minutes=5)


def test_the_token_reveals_neither_the_key_nor_its_hash(client: Client,
                                                        sessions: Sessions) -> None:
    created = client.keys.create(name="ops", role="admin")
    session = sessions.sign_in(created.secret)
    stored = client.keys.find(created.key.id)
    assert stored is not None
    secret_part = created.secret.split("_", 2)[2]
    for shown in (session.token, session.csrf):
        for hidden in (created.secret, secret_part, hash_secret(created.secret),
                       stored[1]):
            assert hidden not in shown
            assert hidden[:16] not in shown
    assert repr(session).count(created.secret) == 0


def test_csrf_matches_only_its_own_session(client: Client, sessions: Sessions) -> None:
    one = client.keys.create(name="one", role="deployer")
    two = client.keys.create(name="two", role="deployer")
    mine, theirs = sessions.sign_in(one.secret), sessions.sign_in(two.secret)
    assert csrf_matches(mine, mine.csrf) is True
    assert csrf_matches(mine, sessions.check(mine.token).csrf) is True  # stable per token
    assert csrf_matches(mine, theirs.csrf) is False
    assert csrf_matches(mine, "") is False
    assert csrf_matches(mine, None) is False
    assert csrf_matches(mine, mine.csrf[:-1]) is False
    assert csrf_matches(mine, mine.csrf.upper()) is False
    assert csrf_matches(mine, mine.token) is False
    assert csrf_matches(mine, parts(mine)[2]) is False  # the session's signature


def test_another_servers_secret_makes_other_sessions(client: Client,
                                                     sessions: Sessions) -> None:
    created = client.keys.create(name="ops", role="admin")
    other = Sessions(client.keys, secret=b"another server's secret, 32 byte")
    refused(other, sessions.sign_in(created.secret).token)
    with pytest.raises(ValueError, match="16 bytes"):
        Sessions(client.keys, secret=b"short")


def test_tokens_match_any_text_without_failing() -> None:
    assert tokens_match("abc", "abc") is True
    for presented in ("é", "abé", "\x00", "abc ", None, ""):
        assert tokens_match("abc", presented) is False  # never TypeError on non-ASCII


def test_the_secret_is_made_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "home" / "console-secret"
    first = load_or_create_secret(path)
    assert len(first) == 32 and load_or_create_secret(path) == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["console-secret"]  # no leftovers
    with ThreadPoolExecutor(8) as pool:  # many workers starting at once agree
        other = tmp_path / "other" / "console-secret"
        assert len(set(pool.map(lambda _: load_or_create_secret(other), range(16)))) == 1

"""Feature definitions applied to the registry's database: a new version per change,
audited; the same definitions again change nothing; bad ones leave nothing behind
(SQLite, then PostgreSQL); and the ``modelhost features`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelhost import Client
from modelhost.cli import run
from modelhost.errors import InvalidInputError, NotFoundError
from modelhost.features import parse_repo
from tests.features.test_definitions import REPO


def test_each_change_is_a_version_and_the_same_definitions_change_nothing(
        client: Client) -> None:
    with pytest.raises(NotFoundError, match="no feature definitions"):
        client.features.current()
    first = client.features.apply(REPO)
    assert (first.version, first.changed) == (1, True)
    assert first.repo == parse_repo(REPO)
    again = client.features.apply(REPO + "\n# only a comment changed\n")
    assert (again.version, again.changed, again.digest) == (1, False, first.digest)
    second = client.features.apply(REPO.replace("ttl: 1d12h", "ttl: 2d"))
    assert (second.version, second.changed) == (2, True)
    assert client.features.current().repo.views["customer_stats"].ttl.days == 2
    old = client.features.current(1).repo  # every version stays readable, whole
    assert old == parse_repo(REPO)
    with pytest.raises(NotFoundError, match="no version 9"):
        client.features.current(9)
    entries = [e for e in client.audit.list(limit=10) if e.action == "features.apply"]
    assert [e.target for e in entries] == ["features:2", "features:1"]
    assert client.audit.verify().ok


def test_bad_definitions_leave_nothing(client: Client) -> None:
    with pytest.raises(InvalidInputError, match="entity 'account'"):
        client.features.apply(REPO.replace("entities: [customer]", "entities: [account]"))
    with pytest.raises(NotFoundError):
        client.features.current()
    assert not [e for e in client.audit.list(limit=10) if e.action == "features.apply"]


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_features_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS", "MODELHOST_SERVER"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "features.yaml"
    path.write_text(REPO)
    assert cli(capsys, "features", "list")[0] == 3  # nothing applied yet
    code, out, _ = cli(capsys, "features", "apply", path)
    assert code == 0 and "version 1: 1 entities, 1 views, 1 services" in out
    code, out, _ = cli(capsys, "features", "apply", path, "--json")
    assert code == 0 and json.loads(out)["changed"] is False
    code, out, _ = cli(capsys, "features", "list")
    assert code == 0 and "customer_stats" in out and "churn_v1" in out
    code, out, _ = cli(capsys, "features", "show", "customer_stats", "--json")
    view = json.loads(out)
    assert code == 0 and (view["kind"], view["ttl"]) == ("feature_view", 129600.0)
    assert cli(capsys, "features", "show", "nothing")[0] == 3
    path.write_text(REPO.replace("ttl: 1d12h", "ttl: sometime"))
    code, _, err = cli(capsys, "features", "apply", path)
    assert code == 1 and "feature_views[0].ttl" in err
    assert cli(capsys, "features", "apply", tmp_path / "missing.yaml")[0] == 3
    code, out, _ = cli(capsys, "features", "list", "--json")
    assert json.loads(out)["version"] == 1  # the refused file changed nothing

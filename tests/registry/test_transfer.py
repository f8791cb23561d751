"""Export from one registry, import into another (another database, SQLite or
PostgreSQL, and another artifact store): the same versions and hashes; importing twice
changes nothing; a conflicting version, a tampered or truncated archive are refused with
nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.fixtures_models import iris, iris_example

from modelhost import Client, Settings
from modelhost.cli import run
from modelhost.errors import ConflictError, InvalidInputError, VersionNotFoundError


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Client]:
    """iris 1.0.0 (production, alias champion) and 1.0.1 (from a run, with a reference
    profile, metrics and tags) in a registry of their own."""
    home = tmp_path / "source"
    with Client(Settings(home=home)) as client:
        X, y = iris()
        registry = client.registry
        registry.register(LogisticRegression(max_iter=500).fit(X, y), name="iris",
                          input_example=iris_example())
        registry.transition("iris", "1.0.0", "staging")
        registry.transition("iris", "1.0.0", "production")
        registry.set_alias("iris", "champion", "1.0.0")
        with client.tracking.start_run("transfer") as active:
            run_id = active.run_id
        registry.register(LogisticRegression(C=0.3, max_iter=500).fit(X, y), name="iris",
                          input_example=iris_example(), metrics={"accuracy": 0.93},
                          tags={"team": "fraud"}, description="smaller C", run_id=run_id,
                          reference_data=X)
        yield client


def blobs(client: Client) -> set[str]:
    return set(client.artifacts.iter_digests())


def test_a_model_moves_with_its_versions_and_hashes(source: Client, client: Client,
                                                    tmp_path: Path) -> None:
    archive = tmp_path / "iris.tar"
    done = source.registry.export("iris", archive)
    assert (done.versions, done.path) == (["1.0.0", "1.0.1"], archive.resolve())

    result = client.registry.import_archive(archive)
    assert (result.model, result.imported, result.unchanged) == ("iris", ["1.0.0", "1.0.1"],
                                                                 [])
    X, _ = iris()
    for before in source.registry.list_versions("iris"):
        after = client.registry.get_version("iris", before.version)
        assert after.artifact_digest == before.artifact_digest
        assert (after.flavor, after.signature, after.metrics, after.params, after.tags,
                after.description) == (before.flavor, before.signature, before.metrics,
                                       before.params, before.tags, before.description)
        assert after.lineage == before.lineage  # as recorded in the source
        assert after.input_example == before.input_example
        # Stages and aliases are the target's to decide.
        assert (after.stage.value, after.aliases) == ("none", ())
        np.testing.assert_array_equal(
            client.registry.load("iris", after.version).predict(X).predictions,
            source.registry.load("iris", before.version).predict(X).predictions)
    assert client.registry.get_version("iris", "1.0.1").lineage.run_id is not None
    reference = client.registry.reference("iris", "1.0.1")
    original = source.registry.reference("iris", "1.0.1")
    assert reference is not None and original is not None
    assert (reference.digest, reference.profile) == (original.digest, original.profile)
    assert client.registry.reference("iris", "1.0.0") is None
    imported = client.audit.list(action="model.import")
    assert sorted(e.target for e in imported) == ["iris:1.0.0", "iris:1.0.1"]
    assert all(e.after["archive"] == "iris.tar" for e in imported)

    # Again: nothing new, nothing written.
    audit = client.audit.verify().entries
    again = client.registry.import_archive(archive)
    assert (again.imported, again.unchanged) == ([], ["1.0.0", "1.0.1"])
    assert client.audit.verify().entries == audit

    # Some versions only.
    only = source.registry.export("iris", tmp_path / "one.tar", ["1.0.1"])
    with tarfile.open(only.path) as tar:
        listed = json.loads(tar.extractfile("modelhost-export.json").read())  # type: ignore[union-attr]
    assert [v["version"] for v in listed["versions"]] == ["1.0.1"]


def test_a_version_here_with_other_content_stops_the_import(source: Client, client: Client,
                                                            tmp_path: Path) -> None:
    X, y = iris()
    client.registry.register(LogisticRegression(C=5.0, max_iter=500).fit(X, y),
                             name="iris", input_example=iris_example())
    archive = source.registry.export("iris", tmp_path / "iris.tar").path
    stored = blobs(client)
    with pytest.raises(ConflictError, match=r"iris 1\.0\.0 exists here with other content"):
        client.registry.import_archive(archive)
    assert [v.version for v in client.registry.list_versions("iris")] == ["1.0.0"]
    assert blobs(client) == stored


def rewrite(archive: Path, out: Path, change: dict[str, bytes | None],
            extra: list[tarfile.TarInfo] = ()) -> Path:  # type: ignore[assignment]
    """A copy of ``archive`` with members replaced (or dropped: None) and ``extra``."""
    with tarfile.open(archive) as old, tarfile.open(out, "w") as new:
        for member in old:
            data = old.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name]  # type: ignore[assignment]
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
        for info in extra:
            new.addfile(info)
    return out


def test_a_tampered_or_truncated_archive_is_refused_with_nothing_written(
        source: Client, sqlite_client: Client, tmp_path: Path) -> None:
    target = sqlite_client
    archive = source.registry.export("iris", tmp_path / "iris.tar").path
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("modelhost-export.json").read())  # type: ignore[union-attr]
    blob = next(n for n in names if n.startswith("blobs/"))
    unknown = json.loads(json.dumps(index))
    unknown["versions"][0]["flavor"] = "tensorflow-9"  # from a modelhost with more flavors
    index["versions"][0]["metrics"] = {"accuracy": 1.0}  # a nicer number, sums unchanged
    link = tarfile.TarInfo("blobs/" + "0" * 64)
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    cases = {
        "does not match its sha256": rewrite(archive, tmp_path / "a.tar", {blob: b"evil"}),
        "SHA256SUMS does not match": rewrite(
            archive, tmp_path / "b.tar",
            {"modelhost-export.json": json.dumps(index).encode()}),
        "is not a regular file": rewrite(archive, tmp_path / "c.tar", {}, [link]),
        "is missing": rewrite(archive, tmp_path / "d.tar", {"SHA256SUMS": None}),
    }
    # A flavor this modelhost does not know, with sums made to match: never imported.
    unknown_index = json.dumps(unknown).encode()
    with tarfile.open(archive) as tar:
        sums = tar.extractfile("SHA256SUMS").read().decode()  # type: ignore[union-attr]
    old_sum = next(line.split("  ")[0] for line in sums.splitlines()
                   if line.endswith("modelhost-export.json"))
    sums = sums.replace(old_sum, hashlib.sha256(unknown_index).hexdigest())
    cases["unknown flavor 'tensorflow-9'"] = rewrite(
        archive, tmp_path / "f.tar",
        {"modelhost-export.json": unknown_index, "SHA256SUMS": sums.encode()})
    truncated = tmp_path / "e.tar"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cases["not a whole tar archive"] = truncated
    for message, bad in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            target.registry.import_archive(bad)
    assert target.registry.list_models() == [] and blobs(target) == set()

    # The command line says the same, exit 1, and the good archive still imports.
    assert run(["--db-url", target.settings.resolved_db_url, "--artifacts",
                str(target.settings.resolved_artifacts), "import", str(truncated)]) == 1
    assert target.registry.import_archive(archive).imported == ["1.0.0", "1.0.1"]


def test_export_refuses_what_it_cannot_do(source: Client, tmp_path: Path) -> None:
    taken = tmp_path / "taken.tar"
    taken.write_bytes(b"keep")
    with pytest.raises(ConflictError, match="already exists"):
        source.registry.export("iris", taken)
    assert taken.read_bytes() == b"keep"
    with pytest.raises(VersionNotFoundError):
        source.registry.export("iris", tmp_path / "x.tar", ["9.9.9"])
    assert not (tmp_path / "x.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_commands(source: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "source"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    archive = tmp_path / "iris.tar"
    assert run(["export", "iris", "--versions", "1.0.1", "-o", str(archive), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"] == ["1.0.1"]
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "target"))
    assert run(["import", str(archive)]) == 0
    assert capsys.readouterr().out.strip() == "iris: imported 1.0.1"
    assert run(["import", str(archive)]) == 0
    assert capsys.readouterr().out.strip() == "iris: already here: 1.0.1"
    assert run(["export", "iris", "-o", str(archive)]) == 4
    assert "already exists" in capsys.readouterr().err

"""``modelhost db backup PATH``: a consistent copy of a SQLite database taken while another
process keeps writing to it, checked by opening it as a registry; and the refusals
(an existing file, a missing folder, PostgreSQL), which write nothing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from tests.conftest import head_revision
from tests.fixtures_models import iris_example, iris_model

from modelhost import Client, Settings
from modelhost.cli import run


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELHOST_HOME", str(home))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    with Client(Settings(home=home)) as client:
        for _ in range(2):
            client.registry.register(iris_model(), name="iris", input_example=iris_example())
    return home


def test_a_backup_taken_while_another_writer_commits_is_whole(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    written: list[int] = []

    def keep_writing() -> None:  # another process's commits, as a server's would be
        with Client(Settings(home=home), migrate=False) as writer:
            while not stop.is_set():
                writer.registry.set_tags("iris", {"beat": str(len(written))})
                written.append(1)

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        while len(written) < 5:
            stop.wait(0.01)
        code, out, err = cli(capsys, "db", "backup", tmp_path / "copy.db", "--json")
    finally:
        stop.set()
        thread.join()
    assert code == 0, err
    done = json.loads(out)
    assert (done["models"], done["versions"], done["revision"]) == (1, 2, head_revision())
    assert done["bytes"] == (tmp_path / "copy.db").stat().st_size > 0
    # Nothing but the backup is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("copy", ".copy"))
                  ) == ["copy.db"]

    # The copy is a registry of its own, with both versions and a tag from some instant.
    copied = tmp_path / "restored"
    copied.mkdir()
    settings = Settings(home=copied, db_url=f"sqlite:///{tmp_path / 'copy.db'}",
                        artifacts=str(home / "artifacts"))
    with Client(settings, migrate=False) as restored:
        versions = restored.registry.list_versions("iris")
        assert [v.version for v in versions] == ["1.0.0", "1.0.1"]
        assert int(restored.registry.get_model("iris").tags["beat"]) < len(written)
        assert restored.registry.load("iris", "1.0.1").predict(iris_example()) is not None

    code, out, _ = cli(capsys, "db", "backup", tmp_path / "second.db")
    assert code == 0
    assert "Backed up 1 model(s), 2 version(s) to" in out and "second.db" in out


def test_a_backup_never_overwrites_and_needs_its_folder(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "taken.db"
    existing.write_bytes(b"keep me")
    code, _, err = cli(capsys, "db", "backup", existing)
    assert code == 4 and "already exists; back up to a new file" in err
    assert existing.read_bytes() == b"keep me"
    code, _, err = cli(capsys, "db", "backup", tmp_path / "no" / "such" / "x.db")
    assert code == 3 and "no such file or folder" in err
    assert not (tmp_path / "no").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_postgresql_is_pointed_at_pg_dump(home: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELHOST_DB_URL",
                       "postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/test")
    code, _, err = cli(capsys, "db", "backup", tmp_path / "pg.db")
    assert code == 1 and "pg_dump --format=custom" in err
    assert "s3cret" not in err and not (tmp_path / "pg.db").exists()

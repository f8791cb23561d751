"""``modelhost stream`` as a user runs it: a real process on real Redis Streams, killed
with SIGKILL mid-stream and started again: every event is scored at least once, none is
lost, a poison event lands in the dead letters without stopping the stream, and SIGTERM
drains (what was written is acknowledged, nothing more is read)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from modelhost import Client, Settings
from modelhost.cli import run
from tests.fixtures_models import iris, iris_example, iris_model
from tests.services import require_redis
from tests.serving.server import MODELHOST, server_env

pytestmark = pytest.mark.slow

EVENTS = 4000
POISON_AT = 1234


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    with Client(Settings(home=home)) as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
    return home


@pytest.fixture
def streams() -> Iterator[tuple[str, str]]:
    url = require_redis()
    base = url.rsplit("/", 1)[0]
    name = f"test-cli-{uuid.uuid4().hex[:12]}"
    yield base, name
    r = redis.Redis.from_url(url)
    r.delete(f"{name}-in", f"{name}-out", f"{name}-in-dead")
    r.close()


def _start(home: Path, base: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(MODELHOST), "stream", "iris", "--source", f"{base}/{name}-in",
             "--sink", f"{base}/{name}-out", "--consumer", "scorer-1", "--batch", "64",
             "--json"],
            env=server_env(home), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=log.parent)


def _wait(condition: object, what: str, log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")


def test_a_killed_consumer_loses_nothing_and_a_stopped_one_drains(
        home: Path, streams: tuple[str, str], tmp_path: Path) -> None:
    base, name = streams
    r = redis.Redis.from_url(f"{base}/0")
    X, _ = iris()
    rows = X.sample(EVENTS, replace=True, random_state=3).to_dict(orient="records")
    pipe = r.pipeline()
    for i, row in enumerate(rows):
        body = b"{not json" if i == POISON_AT else json.dumps(row).encode()
        pipe.xadd(f"{name}-in", {"body": body, "key": f"k{i % 13}"})
    ids = [i.decode() for i in pipe.execute()]
    log = tmp_path / "stream.log"

    first = _start(home, base, name, log)
    _wait(lambda: r.xlen(f"{name}-out") >= 600, "the first results", log)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    scored_before = r.xlen(f"{name}-out")
    assert scored_before < EVENTS - 1, "killed too late to prove anything"

    second = _start(home, base, name, log)
    good = set(ids) - {ids[POISON_AT]}

    def all_scored() -> bool:
        seen = {f[b"source_id"].decode() for _, f in r.xrange(f"{name}-out")}
        return seen >= good and r.xlen(f"{name}-in-dead") >= 1

    _wait(all_scored, "every event scored", log)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0, log.read_text()[-4000:]

    results = [f for _, f in r.xrange(f"{name}-out")]
    seen = [f[b"source_id"].decode() for f in results]
    assert set(seen) == good  # none lost; none made up
    duplicates = len(seen) - len(set(seen))
    # At most what was in flight when it was killed (written, not yet acknowledged).
    assert duplicates <= 64, duplicates
    print(f"killed after {scored_before} results; {duplicates} scored twice")
    letters = [f for _, f in r.xrange(f"{name}-in-dead")]
    assert [f[b"source_id"].decode() for f in letters][:1] == [ids[POISON_AT]]
    assert letters[0][b"body"] == b"{not json"
    assert int(r.xpending(f"{name}-in", "modelhost")["pending"]) == 0
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")  # the --json summary
    summary = json.loads("\n".join(lines[start:]))
    assert summary["model"] == "iris" and summary["scored"] > 0
    # Each key's results keep the order of its events (the stream's order).
    per_key: dict[bytes, list[int]] = {}
    for f in results:
        per_key.setdefault(f[b"key"], []).append(ids.index(f[b"source_id"].decode()))
    for positions in per_key.values():
        firsts = list(dict.fromkeys(positions))  # a duplicate repeats an earlier one
        assert firsts == sorted(firsts)
    r.close()


def test_bad_arguments_exit_with_their_code(home: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELHOST_HOME", str(home))
    monkeypatch.delenv("MODELHOST_SERVER", raising=False)
    assert run(["stream", "ghost", "--source", "redis://127.0.0.1:6379/a",
                "--sink", "redis://127.0.0.1:6379/b"]) == 3
    assert "ghost" in capsys.readouterr().err
    assert run(["stream", "iris", "--source", "kafka://h:9092/t",
                "--sink", "redis://127.0.0.1:6379/b"]) == 1
    assert "redis://" in capsys.readouterr().err

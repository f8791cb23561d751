"""Three `modelhost serve` replicas as one service, through real HTTP on all three: they
share a fresh PostgreSQL database, an S3 bucket (moto's server) and Redis, and nothing
else.

* A version uploaded and promoted through one replica is served by all three within the
  reload interval (1 s here); the delay is measured and printed.
* The prediction cache is shared (a miss on one is a hit on the others), and so is a
  key's rate limit (a burst spread over the three gets one bucket's worth).
* A canary's 30% holds on the combined traffic of the three.
* Jobs spread over the replicas, one replica is killed with SIGKILL while they run and
  predictions keep flowing to the others: every accepted job succeeds, the registry is
  consistent (one production version, every version loads from the bucket) and the
  audit chain verifies.
"""

from __future__ import annotations

import io
import itertools
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import skops.io

from modelhost import Client, Settings
from tests.fixtures_models import iris_example, iris_model
from tests.services import fresh_postgres_database, require_redis
from tests.serving.server import ServerProcess, server_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RELOAD_S = 1.0
DEADLINE_S = 60.0
BUCKET = "replicas"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres_database(f"modelhost_replicas_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(tmp_path_factory.mktemp("aws") / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path_factory.mktemp("aws") / "none")}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    client.close()
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared(database: str, s3: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[dict[str, Any]]:
    """The shared environment, a registry on it (iris in production, with the
    prediction cache on, and a slow model for jobs) and the keys the tests use."""
    import redis

    redis_url = require_redis().rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(redis_url).flushdb()
    env = {**s3, "MODELHOST_DB_URL": database, "MODELHOST_REDIS_URL": redis_url,
           "MODELHOST_ARTIFACTS": f"s3://{BUCKET}/modelhost", "MODELHOST_AUTH": "required",
           "MODELHOST_RELOAD_INTERVAL_S": str(RELOAD_S), "MODELHOST_JOBS_LEASE_S": "3"}
    home = tmp_path_factory.mktemp("replicas") / "home"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the test's own client reads the same bucket
    try:
        with Client(Settings(home=home)) as client:
            registry = client.registry
            first = registry.register(iris_model(), name="iris",
                                      input_example=iris_example())
            registry.transition("iris", first.version, "staging")
            registry.transition("iris", first.version, "production")
            registry.set_tags("iris", {"serving.cache": "true"})
            slow = registry.register("tests.serving.server:SlowModel", name="slow",
                                     flavor="python", signature=first.signature)
            registry.transition("slow", slow.version, "staging")
            registry.transition("slow", slow.version, "production")
            keys = {"deployer": client.keys.create(name="deployer", role="deployer").secret,
                    "predictor": client.keys.create(name="load", role="predictor").secret,
                    "limited": client.keys.create(name="limited", role="predictor",
                                                  rate_limit=1.0).secret}
        yield {"env": env, "home": home, "keys": keys}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def replicas(shared: dict[str, Any]) -> Iterator[list[ServerProcess]]:
    home: Path = shared["home"]
    started = []
    try:
        for n in range(3):
            logs = home.parent / f"replica-{n}"
            logs.mkdir()
            env = server_env(home, **shared["env"])
            started.append(ServerProcess(args=["--workers", "1"], env=env, log_dir=logs))
        for process in started:
            process.launch()
        for process in started:
            process.wait_ready()
        yield started
    finally:
        for process in started:
            if process.running:
                process.kill()


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def served_version(server: ServerProcess, key: str) -> str:
    answer = httpx.post(f"{server.base_url}/v1/models/iris/predict", headers=auth(key),
                        json={"inputs": iris_example(rows=1).to_dict(orient="records")},
                        timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-model-version"]


def metric(server: ServerProcess, key: str, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", headers=auth(key), timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{"))


def test_a_version_promoted_through_one_is_served_by_all(
        replicas: list[ServerProcess], shared: dict[str, Any]) -> None:
    keys = shared["keys"]
    a = replicas[0]
    assert {served_version(r, keys["predictor"]) for r in replicas} == {"1.0.0"}
    upload = httpx.post(f"{a.base_url}/v1/models/iris/versions", headers=auth(keys["deployer"]),
                        files={"file": ("model.skops", skops.io.dumps(iris_model(C=0.5)))},
                        data={"input_example": iris_example(rows=3).to_json(orient="records")},
                        timeout=60)
    assert upload.status_code == 201, upload.text
    version = upload.json()["version"]
    for stage in ("staging", "production"):
        moved = httpx.post(f"{a.base_url}/v1/models/iris/versions/{version}/stage",
                           headers=auth(keys["deployer"]), json={"stage": stage}, timeout=30)
        assert moved.status_code == 200, moved.text
    promoted = time.monotonic()
    seen: dict[int, float] = {}
    while len(seen) < 3 and time.monotonic() - promoted < DEADLINE_S:
        for n, replica in enumerate(replicas):
            if n not in seen and served_version(replica, keys["predictor"]) == version:
                seen[n] = time.monotonic() - promoted
        time.sleep(0.05)
    assert len(seen) == 3, seen
    # Each replica checks the routing revision every second, then loads the version
    # from the bucket before it switches: a second and a load, not more.
    print(f"\nserved by all three {max(seen.values()):.2f} s after the promotion "
          f"(each: {', '.join(f'{s:.2f}' for s in seen.values())} s)")
    assert max(seen.values()) < RELOAD_S + 5.0


def test_the_cache_and_the_rate_limits_are_shared(replicas: list[ServerProcess],
                                                  shared: dict[str, Any]) -> None:
    keys = shared["keys"]
    body = {"inputs": iris_example(rows=2).to_dict(orient="records")}
    before = [metric(r, keys["deployer"], "modelhost_cache_hits_total") for r in replicas]
    for replica in replicas:
        answer = httpx.post(f"{replica.base_url}/v1/models/iris/predict", json=body,
                            headers=auth(keys["predictor"]), timeout=10)
        assert answer.status_code == 200
    hits = [metric(r, keys["deployer"], "modelhost_cache_hits_total") - b
            for r, b in zip(replicas, before, strict=True)]
    assert hits == [0, 1, 1]  # computed by the first, found by the other two

    # One request a second (a bucket of one): a burst over all three gets about one.
    answers = []
    for replica in itertools.islice(itertools.cycle(replicas), 9):
        answers.append(httpx.post(f"{replica.base_url}/v1/models/iris/predict", json=body,
                                  headers=auth(keys["limited"]), timeout=10).status_code)
    assert answers.count(200) <= 2 and answers.count(429) >= 7, answers


def test_a_canary_split_holds_on_the_combined_traffic(replicas: list[ServerProcess],
                                                      shared: dict[str, Any]) -> None:
    keys = shared["keys"]
    with Client(Settings(home=shared["home"])) as client:
        candidate = client.registry.register(iris_model(C=0.1), name="iris",
                                             input_example=iris_example()).version
    started = httpx.post(f"{replicas[1].base_url}/v1/deployments/iris",
                         headers=auth(keys["deployer"]), timeout=60,
                         json={"version": candidate, "strategy": "canary",
                               "options": {"steps": [30, 100], "step_duration_s": 3600}})
    assert started.status_code == 202, started.text
    # Every replica routes by the new weights once it loaded the candidate.
    deadline = time.monotonic() + DEADLINE_S
    for replica in replicas:
        while served_version(replica, keys["predictor"]) != candidate:
            assert time.monotonic() < deadline, "a replica never served the candidate"
    counts = {"candidate": 0, "stable": 0}
    body = {"inputs": iris_example(rows=1).to_dict(orient="records")}

    def send(replica: ServerProcess) -> list[str]:
        with httpx.Client(base_url=replica.base_url, headers=auth(keys["predictor"]),
                          timeout=10) as http:
            return [http.post("/v1/models/iris/predict", json=body).headers["x-model-version"]
                    for _ in range(1000)]

    with ThreadPoolExecutor(3) as pool:
        for versions in pool.map(send, replicas):
            counts["candidate"] += versions.count(candidate)
            counts["stable"] += len(versions) - versions.count(candidate)
    share = counts["candidate"] / 3000
    print(f"\ncanary at 30% over three replicas: {share:.1%} of 3,000 requests")
    # A canary's requests without a key that reach one worker within 2 ms share a draw
    # (rollout.router.WindowedDraw), so 3,000 requests are fewer independent draws: even
    # at four requests per window, 750 of them, a standard deviation of 1.7 points at 30%.
    assert abs(share - 0.30) < 0.05, counts
    promoted = httpx.post(f"{replicas[2].base_url}/v1/deployments/iris/rollout",
                          headers=auth(keys["deployer"]), json={"action": "promote"},
                          timeout=60)
    assert promoted.status_code == 200, promoted.text


def test_a_replica_killed_mid_load_loses_no_job_and_corrupts_nothing(
        replicas: list[ServerProcess], shared: dict[str, Any]) -> None:
    keys = shared["keys"]
    from modelhost.batch import jobs as job_module

    rows = iris_example(rows=1).iloc[[0] * (2 * job_module.CHUNK_ROWS)]
    csv = rows.to_csv(index=False).encode()
    accepted = []
    for replica in itertools.islice(itertools.cycle(replicas), 6):
        answer = httpx.post(f"{replica.base_url}/v1/models/slow/jobs", timeout=60,
                            headers=auth(keys["predictor"]),
                            files={"file": ("rows.csv", io.BytesIO(csv))})
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json()["job_id"])
    victim, survivors = replicas[1], [replicas[0], replicas[2]]

    def status(job_id: str) -> dict[str, Any]:
        server = survivors[0]
        answer = httpx.get(f"{server.base_url}/v1/jobs/{job_id}",
                           headers=auth(keys["predictor"]), timeout=10)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    deadline = time.monotonic() + DEADLINE_S
    while not any(status(j)["status"] == "running" for j in accepted):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Load on every replica, then the victim dies with it.
    body = {"inputs": iris_example(rows=3).to_dict(orient="records")}

    def load(replica: ServerProcess) -> list[int]:
        codes = []
        with httpx.Client(base_url=replica.base_url, headers=auth(keys["predictor"]),
                          timeout=10) as http:
            for _ in range(100):
                try:
                    codes.append(http.post("/v1/models/iris/predict", json=body).status_code)
                except httpx.HTTPError:
                    codes.append(-1)
        return codes

    with ThreadPoolExecutor(3) as pool:
        loads = [pool.submit(load, r) for r in replicas]
        time.sleep(0.3)
        victim.kill()
        results = [f.result() for f in loads]
    assert set(results[0]) == {200} and set(results[2]) == {200}  # the others answered
    assert -1 in results[1] or set(results[1]) == {200}  # the victim's load was cut off

    finished = {}
    deadline = time.monotonic() + 2 * DEADLINE_S
    while len(finished) < len(accepted) and time.monotonic() < deadline:
        for job_id in accepted:
            body_ = status(job_id)
            if body_["status"] in ("succeeded", "failed"):
                finished[job_id] = body_
        time.sleep(0.2)
    assert len(finished) == len(accepted), finished
    assert {b["status"] for b in finished.values()} == {"succeeded"}, finished
    assert {b["rows"] for b in finished.values()} == {2 * job_module.CHUNK_ROWS}
    print(f"\njobs' attempts: {sorted(b['attempts'] for b in finished.values())}")

    with Client(Settings(home=shared["home"]), migrate=False) as client:
        assert client.audit.verify().ok
        for model in client.registry.list_models():
            versions = client.registry.list_versions(model.name)
            assert [v.stage.value for v in versions].count("production") == 1, versions
            for version in versions:  # every artifact whole in the bucket
                assert client.registry.load(model.name, version.version).model is not None

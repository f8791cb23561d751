"""How long a 1,000-row job takes from submission to its result on an idle server, against
the same rows as one synchronous request.

    .venv/bin/python benchmarks/batch/job_latency.py [--repeats 20] [--workers 2]

A real `modelhost serve` (SQLite, the serving benchmark's LR pipeline in production).
Each repeat: POST /v1/models/NAME/jobs with 1,000 rows, GET /v1/jobs/{id} every 10 ms
until it succeeded, then GET its result; and POST /v1/models/NAME/predict with the same
rows. Alternated (ABBA).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from common import frame, make_data, train

ROOT = Path(__file__).resolve().parents[2]
MODELHOST = ROOT / ".venv" / "bin" / "modelhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job(http: httpx.Client, rows: list[dict[str, float]]) -> float:
    started = time.perf_counter()
    answer = http.post("/v1/models/lr/jobs", json={"inputs": rows})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    while True:
        body = http.get(f"/v1/jobs/{job_id}").json()
        if body["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.01)
    assert body["status"] == "succeeded" and body["rows"] == len(rows), body
    result = http.get(body["result_uri"])
    assert len(result.content.splitlines()) == len(rows)
    return time.perf_counter() - started


def request(http: httpx.Client, rows: list[dict[str, float]]) -> float:
    started = time.perf_counter()
    answer = http.post("/v1/models/lr/predict", json={"inputs": rows})
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from modelhost import Client, Settings

    X, y, _, _ = make_data()
    rows = frame(X[:1000]).to_dict(orient="records")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with Client(Settings(home=home)) as client:
            mv = client.registry.register(train("lr-pipeline", X, y), name="lr",
                                          input_example=frame(X[:5]))
            client.registry.transition("lr", mv.version, "staging")
            client.registry.transition("lr", mv.version, "production")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
        env["MODELHOST_HOME"] = str(home)
        server = subprocess.Popen([str(MODELHOST), "serve", "--port", str(port), "--workers",
                                   str(args.workers)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for _ in range(600):
                    try:
                        if http.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                job(http, rows)  # warm-up: the first job loads the model in its process
                request(http, rows)
                jobs, requests = [], []
                for r in range(args.repeats):
                    for which in (("job", "request") if r % 2 == 0 else ("request", "job")):
                        if which == "job":
                            jobs.append(job(http, rows))
                        else:
                            requests.append(request(http, rows))
        finally:
            server.terminate()
            server.wait(timeout=60)
    jobs.sort()
    print(f"1,000 rows, {args.repeats} repeats, {args.workers} workers")
    print(f"job, submission to result read: median {statistics.median(jobs) * 1000:.0f} ms, "
          f"p90 {jobs[int(len(jobs) * 0.9) - 1] * 1000:.0f} ms, max {jobs[-1] * 1000:.0f} ms")
    print(f"one synchronous request: median {statistics.median(requests) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

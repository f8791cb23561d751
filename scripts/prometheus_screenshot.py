"""Render docs/images/prometheus-graphs.png: the shipped recording rules in a real
Prometheus, scraping a real `modelhost serve` under traffic that drifts half-way.

    .venv/bin/python scripts/prometheus_screenshot.py [--minutes 6] [-o PATH]

Needs Debian's prometheus and chromium (`make system-deps`). The server serves an iris
LogisticRegression pipeline registered with its training inputs as the reference and its
training accuracy; every request gets its ground truth as feedback. In the first half
the inputs are training rows and the labels true; in the second, two features move up
(drift) and a third of the labels are wrong (the live accuracy falls). Metrics are
measured over a five-minute window here (`MODELHOST_MONITOR_METRICS_WINDOW_S=300`) so
that both halves show within minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelhost import Client, Settings

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PANELS = (  # (expression, what it shows)
    ("modelhost:requests:rate1m", "requests per second"),
    ("modelhost:drift_share:max", "share of drifted features"),
    ('modelhost:model_quality:max{metric="accuracy"}', "live accuracy"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, deadline_s: float = 60.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer in {deadline_s:.0f} s")


def register(home: Path) -> None:
    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        X, data.target)
    with Client(Settings(home=home)) as client:
        mv = client.registry.register(model, name="iris", input_example=X.head(5),
                                      reference_data=X,
                                      metrics={"accuracy": float(model.score(X, data.target))})
        client.transition_stage("iris", mv.version, "staging")
        client.transition_stage("iris", mv.version, "production")


def traffic(base_url: str, seconds: float) -> None:
    """Requests at a rate that rises and falls (5 to 25 a second), each with its ground
    truth; drift and wrong labels in the second half."""
    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    y = data.target.to_numpy()
    rng = np.random.default_rng(7)
    start = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=10) as http:
        while (elapsed := time.monotonic() - start) < seconds:
            drifting = elapsed > seconds / 2
            rate = 15 + 10 * math.sin(elapsed / 40)
            rows = rng.integers(0, len(X), size=max(1, round(rate / 2)))
            labels = []
            for row in rows:
                inputs = X.iloc[int(row)].to_dict()
                truth = int(y[row])
                if drifting:
                    inputs["sepal_width"] += 1.0
                    inputs["petal_length"] += 1.5
                    truth = (truth + 1) % 3 if rng.random() < 1 / 3 else truth
                answer = http.post("/v1/models/iris/predict", json={"inputs": [inputs]})
                if answer.status_code == 200:
                    labels.append({"request_id": answer.headers["x-request-id"],
                                   "label": truth})
            http.post("/v1/feedback", json={"items": labels})
            time.sleep(0.5)


def screenshot(prometheus: str, minutes: float, output: Path) -> None:
    params: dict[str, str] = {}
    for i, (expr, _) in enumerate(PANELS):
        params |= {f"g{i}.expr": expr, f"g{i}.tab": "0", f"g{i}.stacked": "0",
                   f"g{i}.show_exemplars": "0", f"g{i}.range_input": f"{math.ceil(minutes)}m"}
    url = f"{prometheus}/graph?{urlencode(params)}"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is missing: make system-deps")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1280,2300",
                    "--virtual-time-budget=15000", f"--screenshot={output}", url],
                   check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("-o", "--output", type=Path,
                        default=ROOT / "docs" / "images" / "prometheus-graphs.png")
    args = parser.parse_args()
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        raise SystemExit("prometheus is missing: make system-deps")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = folder / "home"
        register(home)
        port, prom_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
        env |= {"MODELHOST_HOME": str(home), "MODELHOST_ALERTS_INTERVAL_S": "2",
                "MODELHOST_MONITOR_FLUSH_S": "1", "MODELHOST_MONITOR_METRICS_WINDOW_S": "300"}
        server = subprocess.Popen(
            [sys.executable, "-m", "modelhost.cli", "serve", "--port", str(port),
             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "5s"
        (folder / "rules.yml").write_text(yaml.safe_dump(rules))
        (folder / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [{"job_name": "modelhost",
                                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
        prometheus = subprocess.Popen(
            [prometheus_bin, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(f"http://127.0.0.1:{port}/readyz")
            wait_for(f"http://127.0.0.1:{prom_port}/-/ready")
            traffic(f"http://127.0.0.1:{port}", args.minutes * 60)
            time.sleep(15)  # the last flush, measurement and scrape
            screenshot(f"http://127.0.0.1:{prom_port}", args.minutes + 0.5, args.output)
        finally:
            server.send_signal(signal.SIGTERM)
            prometheus.terminate()
            server.wait(timeout=60)
            prometheus.wait(timeout=60)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

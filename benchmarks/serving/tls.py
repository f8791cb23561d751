"""What HTTPS costs: one `modelhost serve --workers 2` per run, over plain HTTP or over
HTTPS with a self-signed certificate (ECDSA P-256, made with `openssl`), the benchmark's
20-feature LogisticRegression, one-row requests from wrk at 64 keep-alive connections;
rounds alternate the two.

Run from the repository root (wrk and openssl must be installed):

    .venv/bin/python benchmarks/serving/tls.py [--rounds 3] [--duration 8]

It prints requests per second, p99 and the server's CPU time per request per run, then
each round's ratio of HTTPS to plain HTTP.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "rollouts"))

from split import COLUMNS, prepare, probe_row, serve_and_load  # noqa: E402


def make_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=bench", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                    str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {"http": [], "https": []}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        prepare(home)
        cert, key = make_certificate(Path(tmp))
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(
            {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}))
        for round_ in range(1, args.rounds + 1):
            for scheme in results:
                tls = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
                result = serve_and_load(
                    home, body_file, args.duration,
                    args=("--workers", "2", *(tls if scheme == "https" else ())),
                    verify=ssl.create_default_context(cafile=str(cert)))
                results[scheme].append(result)
                print(f"round {round_} {scheme:>5}: {result['rps']:>9,.0f} req/s, "
                      f"p99 {result['p99_ms']:.1f} ms, {result['errors']} errors, "
                      f"server CPU {result['cpu_us']:.1f} µs per request", flush=True)
    ratios = [s["rps"] / p["rps"] for p, s in zip(results["http"], results["https"],
                                                   strict=True)]
    cpu = [s["cpu_us"] / p["cpu_us"] for p, s in zip(results["http"], results["https"],
                                                      strict=True)]
    print("https / http per round: " + ", ".join(f"{r:.1%}" for r in ratios)
          + f" (median {statistics.median(ratios):.1%})")
    print("server CPU per request, https / http: " + ", ".join(f"{r:.1%}" for r in cpu))


if __name__ == "__main__":
    main()

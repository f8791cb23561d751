"""What encrypting artifacts at rest costs: registration and load time of the same model
in a registry without a key and in one with `MODELHOST_ENCRYPTION_KEY`, alternated.

Run from the repository root:

    .venv/bin/python benchmarks/artifacts/encryption.py [--repeats 7]

The model is the serving benchmark's RandomForest (100 trees, 20 features), a few MB of
artifact. Registration stores new blobs each time (a fresh registry per repeat); a load
reads and verifies every blob and builds the model.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "serving"))

from common import frame, make_data, train  # noqa: E402

import modelhost  # noqa: E402
from modelhost.artifacts.encryption import new_key  # noqa: E402


def once(model: object, example: object, key: str | None) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = modelhost.Settings(
            home=Path(tmp), encryption_key=SecretStr(key) if key else None)
        with modelhost.Client(settings) as client:
            started = time.perf_counter()
            mv = client.registry.register(model, name="bench-rf", input_example=example)
            registered = time.perf_counter() - started
            started = time.perf_counter()
            client.registry.load("bench-rf", mv.version)
            loaded = time.perf_counter() - started
            return registered, loaded, mv.artifact_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    X, y, _, _ = make_data()
    model, example = train("rf", X, y), frame(X[:5])
    key = new_key()
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "encrypted": []}
    size = 0
    once(model, example, None)  # warm-up: imports, caches
    for repeat in range(args.repeats):
        # ABBA order, and a collection before each: neither goes first every time.
        order = list(times) if repeat % 2 == 0 else list(reversed(times))
        for label in order:
            gc.collect()
            registered, loaded, size = once(model, example,
                                            key if label == "encrypted" else None)
            times[label].append((registered, loaded))
    print(f"artifact: {size / 1e6:.1f} MB, {args.repeats} repeats, alternated (ABBA)")
    for label, runs in times.items():
        reg = statistics.median(r for r, _ in runs) * 1000
        load = statistics.median(lo for _, lo in runs) * 1000
        print(f"{label:>10}: register {reg:7.1f} ms, load {load:7.1f} ms (medians)")
    plain, sealed = times["plain"], times["encrypted"]
    for i, what in enumerate(("register", "load")):
        ratio = statistics.median(s[i] for s in sealed) / statistics.median(p[i] for p in plain)
        print(f"{what}: encrypted / plain = {ratio:.2f}")


if __name__ == "__main__":
    main()

"""How long a drift report takes over long windows of live profiles.

Run from the repository root:

    .venv/bin/python benchmarks/monitoring/drift_query.py [--features 50] [--workers 2]
        [--db-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

It registers a LogisticRegression on ``--features`` numeric features with a reference
profile (5,000 training rows), then stores what ``--workers`` workers of a server write
over 7 days of steady traffic, as the server keeps them: one-minute windows for the last
two days (older ones are pruned) and one-hour windows for all seven. Each window holds
realistic counts (a few hundred rows a minute). It then times ``DriftService.drift``
(what ``GET /v1/models/{name}/monitoring/drift`` and ``modelhost monitor drift`` run)
over 1 hour, 1 day and 7 days, and prints the median and the slowest of ``--repeat``
runs, with the rows read. The goal: 7 days for 50 features in under 200 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from modelhost._utils import utcnow
from modelhost.client import Client
from modelhost.config import Settings
from modelhost.monitoring.drift import DriftService
from modelhost.stats.profile import Layout, Reference
from modelhost.store.profiles import HOUR_S, MINUTE_S, WindowCounts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--db-url", default=None)
    args = parser.parse_args()

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), db_url=args.db_url) if args.db_url \
            else Settings(home=Path(home))
        client = Client(settings)
        name = f"drift-bench-{int(time.time())}"
        columns = [f"f{i}" for i in range(args.features)]
        X = pd.DataFrame(rng.normal(size=(5000, args.features)), columns=columns)
        y = (X["f0"] + X["f1"] > 0).astype(int)
        mv = client.registry.register(LogisticRegression(max_iter=200).fit(X, y),
                                      name=name, input_example=X[:5], reference_data=X)
        stored = client.registry.reference(name, mv.version)
        assert stored is not None
        reference = Reference.from_dict(stored.profile)
        layout = Layout(reference)

        now = utcnow()
        start = now - dt.timedelta(days=args.days)
        t0 = time.perf_counter()
        written = _fill(client, name, mv.version, layout, start=start, now=now,
                        workers=args.workers, rng=rng)
        print(f"stored {written} windows ({args.workers} workers, {args.days} days, "
              f"{args.features} features, {layout.size * 8 / 1024:.1f} KiB each) in "
              f"{time.perf_counter() - t0:.0f} s; database: "
              f"{client.db.url.split(':')[0] if hasattr(client.db, 'url') else 'sqlite'}")

        service = DriftService(client.profiles, references=client.registry.reference,
                               now=utcnow)
        print(f"{'window':>8} {'median ms':>10} {'max ms':>8} {'requests':>10}")
        for label, span in (("1h", dt.timedelta(hours=1)), ("1d", dt.timedelta(days=1)),
                            ("7d", dt.timedelta(days=args.days))):
            times = []
            report = None
            for _ in range(args.repeat):
                t = time.perf_counter()
                report = service.drift(name, mv.version, start=now - span, end=now)
                times.append((time.perf_counter() - t) * 1000)
            assert report is not None
            print(f"{label:>8} {statistics.median(times):>10.1f} {max(times):>8.1f} "
                  f"{report.requests:>10}")


def _fill(client: Client, name: str, version: str, layout: Layout, *, start: dt.datetime,
          now: dt.datetime, workers: int, rng: np.random.Generator) -> int:
    """The windows a server keeps after ``now - start`` of traffic: minute windows of the
    last two days, hour windows of all of it."""
    minute = _one_window(layout, rng, rows=300)
    hour = minute * 60
    batch: list[WindowCounts] = []
    written = 0

    def add(width: int, at: dt.datetime, counts: np.ndarray, worker: int) -> None:
        nonlocal written
        batch.append(WindowCounts(model=name, version=version, width_s=width, start=at,
                                  worker=f"w{worker}", digest=layout.digest,
                                  counts=counts.astype("<f8").tobytes()))
        if len(batch) >= 2000:
            client.profiles.write_windows(batch)
            written += len(batch)
            batch.clear()

    first_hour = _floor(start, HOUR_S)
    for w in range(workers):
        at = first_hour
        while at < now:
            add(HOUR_S, at, hour, w)
            at += dt.timedelta(seconds=HOUR_S)
        at = _floor(now - dt.timedelta(days=2), MINUTE_S)
        while at < now:
            add(MINUTE_S, at, minute, w)
            at += dt.timedelta(seconds=MINUTE_S)
    client.profiles.write_windows(batch)
    return written + len(batch)


def _one_window(layout: Layout, rng: np.random.Generator, *, rows: int) -> np.ndarray:
    reference = layout.reference
    assert reference is not None
    counts = layout.empty()
    data = {f.name: rng.normal(size=rows) for f in reference.features}
    layout.add_rows(counts, data, rng.integers(0, 2, size=rows))
    layout.add_requests(counts, latencies_s=rng.gamma(2.0, 0.002, size=rows), errors=0,
                        rows=rows)
    return counts


def _floor(t: dt.datetime, seconds: int) -> dt.datetime:
    stamp = int(t.timestamp())
    return dt.datetime.fromtimestamp(stamp - stamp % seconds, dt.timezone.utc)


if __name__ == "__main__":
    main()

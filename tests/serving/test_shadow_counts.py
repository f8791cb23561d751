"""Shadow comparisons and their counts: what agrees, numeric differences, and the
windows of several workers summed by the store; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np

from modelhost import Client
from modelhost.serving.shadow import compare
from modelhost.store.shadows import ShadowCounts, ShadowStore, ShadowWindow

T0 = dt.datetime(2026, 12, 4, 12, tzinfo=dt.timezone.utc)


def test_classes_agree_row_by_row() -> None:
    assert compare(np.array(["a", "b", "c"]), np.array(["a", "x", "c"])) == (2, 3, 0, 0.0)


def test_numbers_agree_and_differ() -> None:
    agreed, rows, numeric, diff = compare(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 2.0]))
    assert (agreed, rows, numeric) == (1, 3, 3) and diff == 1.5


def test_multi_output_rows_compare_as_wholes() -> None:
    agreed, rows, numeric, diff = compare(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]))
    assert (agreed, rows, numeric, diff) == (1, 2, 2, 0.5)


def test_answers_that_do_not_fit_compare_nothing_or_disagree() -> None:
    assert compare(np.array([1, 2]), np.array([1, 2, 3])) == (0, 0, 0, 0.0)
    assert compare(np.array([[1, 2]]), np.array([1])) == (0, 1, 0, 0.0)
    assert compare(np.array(1), np.array(1)) == (0, 0, 0, 0.0)


def test_non_finite_differences_are_left_out() -> None:
    agreed, rows, numeric, diff = compare(np.array([1.0, np.nan]), np.array([2.0, 1.0]))
    assert (agreed, rows, numeric, diff) == (0, 2, 1, 1.0)


def test_workers_minutes_add_up_and_a_worker_rewrites_its_own(client: Client) -> None:
    store = ShadowStore(client.db)
    one = ShadowCounts(requests=10, errors=1, rows=9, agreed=8, numeric_rows=9,
                       abs_diff_sum=0.9, latency_sum=0.05)
    store.write([ShadowWindow("iris", "1.0.0", "1.0.1", T0, "w1", one),
                 ShadowWindow("iris", "1.0.0", "1.0.1", T0, "w2", one),
                 ShadowWindow("iris", "1.0.0", "1.0.1", T0 + dt.timedelta(minutes=1), "w1",
                              one),
                 ShadowWindow("iris", "1.0.0", "1.0.2", T0, "w1", one)])
    grown = ShadowCounts(requests=20, errors=1, skipped=3, rows=19, agreed=18,
                         numeric_rows=19, abs_diff_sum=1.9, latency_sum=0.1)
    store.write([ShadowWindow("iris", "1.0.0", "1.0.1", T0, "w1", grown)])  # the same minute
    total = store.totals("iris", "1.0.0", "1.0.1", start=T0,
                         end=T0 + dt.timedelta(minutes=2))
    assert (total.requests, total.errors, total.skipped, total.rows, total.agreed) == (
        40, 3, 3, 37, 34)
    assert total.to_dict() == {"requests": 40, "errors": 3, "skipped": 3,
                               "rows_compared": 37, "agreement_rate": round(34 / 37, 6),
                               "mean_abs_difference": round(3.7 / 37, 6),
                               "mean_latency_ms": round(0.2 / 37 * 1000, 3)}
    first_minute = store.totals("iris", "1.0.0", "1.0.1", start=T0,
                                end=T0 + dt.timedelta(minutes=1))
    assert first_minute.requests == 30
    assert store.totals("iris", "1.0.0", "9.9.9", start=T0, end=T0 + dt.timedelta(1)) \
        == ShadowCounts()
    assert ShadowCounts().to_dict()["agreement_rate"] is None
    assert store.prune(before=T0 + dt.timedelta(minutes=1)) == 3


def test_the_flusher_prunes_old_shadow_minutes(client: Client) -> None:
    from modelhost.serving.monitor import Monitoring
    from modelhost.serving.server import MonitorOptions

    store = ShadowStore(client.db)
    old = ShadowWindow("iris", "1.0.0", "1.0.1", T0 - dt.timedelta(days=40), "w1",
                       ShadowCounts(requests=1))
    store.write([old, ShadowWindow("iris", "1.0.0", "1.0.1", T0, "w1",
                                   ShadowCounts(requests=2))])
    monitoring = Monitoring(client.registry, MonitorOptions())
    keep = dt.timedelta(days=30)
    monitoring.also_prune(lambda now: store.prune(before=T0 - keep))
    monitoring._prune()
    assert store.totals("iris", "1.0.0", "1.0.1", start=T0 - dt.timedelta(days=400),
                        end=T0 + dt.timedelta(days=1)).requests == 2


def test_without_a_store_only_the_current_minute_is_kept() -> None:
    from modelhost.serving.shadow import ShadowRunner

    clock = [T0]
    runner = ShadowRunner(None, None, now=lambda: clock[0])  # type: ignore[arg-type]
    runner._count("iris", "1.0.0", "1.0.1", requests=1)
    clock[0] = T0 + dt.timedelta(minutes=1)
    runner._count("iris", "1.0.0", "1.0.1", requests=1)
    assert runner.flush() == 0
    assert [key[3] for key in runner._counts] == [T0 + dt.timedelta(minutes=1)]

"""Materialization: the latest value per entity key of each feature view, from its source
into the online store.

A run covers a window of event times, ``(start, end]``. Without a start it continues from
where the view's last run ended (incremental), or takes the whole history the first time;
the end defaults to now. Within the window, the latest row per key wins (between rows of
one time, the later ``created_timestamp_column``, then the later row). The store keeps the
newer of what it holds and what is written, and a view's freshness is recorded only after
all of its rows are written: a run that stops halfway leaves the previous end in place,
so running it again rewrites the same window and the store ends complete, with no
duplicate (one value per key) and nothing lost.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelhost._utils import utcnow
from modelhost.errors import InvalidInputError
from modelhost.features.definitions import FeatureRepo, FeatureView
from modelhost.features.offline import as_utc_times
from modelhost.features.online import Freshness, OnlineStore, entity_key
from modelhost.features.sources import read_view

CHUNK_ROWS = 10_000
Progress = Callable[[str, int, int], None]  # (view, keys written so far, keys in all)


@dataclass(frozen=True)
class Materialized:
    view: str
    start: dt.datetime | None
    end: dt.datetime
    source_rows: int  # rows of the source inside the window
    keys: int  # entity keys written (the latest row of each)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat(), "source_rows": self.source_rows,
                "keys": self.keys, "seconds": round(self.seconds, 3)}


def materialize(repo: FeatureRepo, store: OnlineStore, *, views: Sequence[str] = (),
                start: dt.datetime | None = None, end: dt.datetime | None = None,
                read: Callable[[FeatureView, Sequence[str]], Any] = read_view,
                progress: Progress | None = None) -> list[Materialized]:
    """Materialize ``views`` (every view when empty) over ``(start, end]``."""
    end = _utc(end) if end is not None else utcnow()
    start = _utc(start) if start is not None else None
    if start is not None and start >= end:
        raise InvalidInputError(f"the window is empty: start {start.isoformat()} is not "
                                f"before end {end.isoformat()}")
    unknown = [v for v in views if v not in repo.views]
    if unknown:
        raise InvalidInputError(f"no feature view {', '.join(map(repr, unknown))}; the "
                                f"definitions have {', '.join(sorted(repo.views)) or 'none'}")
    previous = store.freshness()
    done = []
    for view in [repo.views[v] for v in views or repo.views]:
        began = time.perf_counter()
        last = previous.get(view.name)
        since = start if start is not None else (last.materialized_until if last else None)
        if since is not None and since >= end:
            done.append(Materialized(view.name, since, end, 0, 0, 0.0))
            continue
        latest, source_rows = _latest_rows(view, repo.join_keys(view), since, end, read)
        keys = _write(store, view, repo.join_keys(view), latest, progress)
        newest = _newest(latest, view) or (last.latest_event if last else None)
        store.record(Freshness(view.name, end, newest, keys, utcnow()))
        done.append(Materialized(view.name, since, end, source_rows, keys,
                                 time.perf_counter() - began))
    return done


def _latest_rows(view: FeatureView, join_keys: Sequence[str], since: dt.datetime | None,
                 end: dt.datetime, read: Callable[[FeatureView, Sequence[str]], Any]
                 ) -> tuple[Any, int]:
    import pandas as pd

    source = view.source
    frame = read(view, join_keys)
    times = as_utc_times(frame[source.timestamp_field],
                         f"feature view {view.name!r}: the source's "
                         f"{source.timestamp_field!r}")
    inside = times.notna() & (times <= pd.Timestamp(end))
    if since is not None:
        inside &= times > pd.Timestamp(since)
    frame = frame.loc[inside.to_numpy()].copy()
    frame["__ts"] = times[inside]  # aligned on the index; to_numpy() would box each time
    order = ["__ts", *([source.created_timestamp_column]
                       if source.created_timestamp_column else [])]
    frame = frame.sort_values(order, kind="mergesort")  # stable: the source's order last
    latest = frame.drop_duplicates(subset=list(join_keys), keep="last")
    return latest, len(frame)


def _write(store: OnlineStore, view: FeatureView, join_keys: Sequence[str], latest: Any,
           progress: Progress | None) -> int:
    total = len(latest)
    if progress is not None:
        progress(view.name, 0, total)
    if not total:
        return 0
    names = [f.name for f in view.schema]
    keys = [entity_key(values) for values in
            zip(*(latest[k].tolist() for k in join_keys), strict=True)]
    seconds = (latest["__ts"].dt.tz_convert(None).astype("datetime64[us]")
               .astype("int64") / 1e6).tolist()
    columns = [_plain_column(latest[n]) for n in names]
    # orjson writes every float exactly (pandas' to_json rounds to 15 digits at most);
    # NaN is written as null. Decoded to text: orjson's bytes keep their whole buffer
    # (~8 KiB each), so a million of them took 9 GiB.
    values = [orjson.dumps(dict(zip(names, row, strict=True)), default=str).decode()
              for row in zip(*columns, strict=True)]
    for begin in range(0, total, CHUNK_ROWS):
        stop = min(total, begin + CHUNK_ROWS)
        store.write(view.name, list(zip(keys[begin:stop], seconds[begin:stop],
                                        values[begin:stop], strict=True)))
        if progress is not None:
            progress(view.name, stop, total)
    return total


def _plain_column(values: Any) -> list[Any]:
    """A column's values as Python objects (times as ISO 8601 text)."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return [None if pd.isna(v) else v.isoformat() for v in values]
    return list(values.tolist())


def _newest(latest: Any, view: FeatureView) -> dt.datetime | None:
    if not len(latest):
        return None
    newest: dt.datetime = latest["__ts"].max().to_pydatetime()
    return newest


def _utc(moment: dt.datetime) -> dt.datetime:
    utc = dt.timezone.utc
    return moment.replace(tzinfo=utc) if moment.tzinfo is None else moment.astimezone(utc)

"""Point-in-time-correct training frames (the offline store's join).

For each row of an entity frame (join keys and the ``event_timestamp`` of the label),
each feature takes the value of the view's latest source row for those keys whose
timestamp is at or before the row's, and no older than the view's TTL; with none, the
feature is null. Rows are never dropped or reordered. Between source rows of one key
and one timestamp, the one written last wins (the ``created_timestamp_column``, then
the order of the source): a late correction replaces what it corrects, and rows that
arrive out of order are placed by their time, not by where they stand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from modelhost.errors import InvalidInputError
from modelhost.features.definitions import FeatureRepo, Source, names_of
from modelhost.features.transform import transform

_ROW = "__modelhost_row"
_TS = "__modelhost_feature_ts"


def point_in_time_join(entity_df: Any, source_df: Any, *, join_keys: Sequence[str],
                       features: Sequence[str], timestamp_field: str = "event_timestamp",
                       created_column: str | None = None, ttl: dt.timedelta | None = None,
                       names: Sequence[str] | None = None,
                       event_timestamp: str = "event_timestamp") -> Any:
    """``entity_df`` with one column per feature (named ``names``, the features' own
    names by default), as of each row's ``event_timestamp``."""
    import pandas as pd

    names = list(names or features)
    _require(entity_df, [*join_keys, event_timestamp], "the entity frame")
    _require(source_df, [*join_keys, timestamp_field, *features,
                         *([created_column] if created_column else [])], "the source")
    clash = sorted(set(names) & set(entity_df.columns))
    if clash:
        raise InvalidInputError(f"the entity frame already has the column(s) "
                                f"{', '.join(clash)}")
    left = entity_df[[*join_keys, event_timestamp]].copy()
    left[event_timestamp] = as_utc_times(left[event_timestamp],
                                         f"the entity frame's {event_timestamp!r}")
    if left[event_timestamp].isna().any():
        raise InvalidInputError(f"the entity frame's {event_timestamp!r} has empty values: "
                                "every row needs the time of its label")
    left[_ROW] = range(len(left))

    right = source_df[[*join_keys, timestamp_field, *features,
                       *([created_column] if created_column else [])]].copy()
    right[_TS] = as_utc_times(right[timestamp_field], f"the source's {timestamp_field!r}")
    right = right[right[_TS].notna()]
    order = [_TS, *([created_column] if created_column else [])]
    right = right.sort_values(order, kind="mergesort")  # stable: the source's order last
    right = right.drop_duplicates(subset=[*join_keys, _TS], keep="last")
    right = right[[*join_keys, _TS, *features]].rename(columns=dict(zip(features, names,
                                                                        strict=True)))
    for key in join_keys:  # merge_asof matches keys of one dtype only
        if left[key].dtype != right[key].dtype:
            left[key] = left[key].astype(object)
            right[key] = right[key].astype(object)

    joined = pd.merge_asof(
        left.sort_values(event_timestamp, kind="mergesort"), right, left_on=event_timestamp,
        right_on=_TS, by=list(join_keys), direction="backward", allow_exact_matches=True,
        tolerance=pd.Timedelta(ttl) if ttl is not None else None)
    joined = joined.sort_values(_ROW, kind="mergesort")
    out = entity_df.copy()
    for name in names:
        out[name] = joined[name].to_numpy()
    return out


def training_frame(entity_df: Any, repo: FeatureRepo, service: str, *,
                   read_source: Callable[[Source], Any], full_feature_names: bool = False,
                   event_timestamp: str = "event_timestamp") -> Any:
    """``entity_df`` with the features of ``service``, each view joined point in time
    from its source (``read_source`` reads a view's files into a DataFrame)."""
    wanted = repo.service_features(service)
    names = names_of(wanted, full=full_feature_names)
    frame = entity_df
    by_view: dict[str, list[int]] = {}
    for i, (view, _) in enumerate(wanted):
        by_view.setdefault(view.name, []).append(i)
    for view_name, positions in by_view.items():
        view = repo.views[view_name]
        frame = point_in_time_join(
            frame, read_source(view.source), join_keys=repo.join_keys(view),
            features=[wanted[i][1].name for i in positions],
            names=[names[i] for i in positions], timestamp_field=view.source.timestamp_field,
            created_column=view.source.created_timestamp_column, ttl=view.ttl,
            event_timestamp=event_timestamp)
        if view.transformation is not None:
            frame = _transformed(frame, view.transformation, view_name,
                                 {names[i]: wanted[i][1].name for i in positions})
    return frame


def _transformed(frame: Any, target: str, view: str, columns: dict[str, str]) -> Any:
    """``frame`` with the columns of one view (``{column: feature name}``) replaced by
    what the view's transformation makes of them (it sees the features' own names)."""
    given = frame[list(columns)].rename(columns=columns)
    result = transform(target, given, list(columns.values()), view)
    out = frame.copy()
    for column, feature in columns.items():
        out[column] = result[feature].to_numpy()
    return out


def _require(frame: Any, columns: Sequence[str], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{what} has no column(s) {', '.join(map(repr, missing))}")


def as_utc_times(values: Any, what: str) -> Any:
    """``values`` as UTC times (naive ones are taken as UTC; text as ISO 8601)."""
    import pandas as pd

    text = values.dtype == object or pd.api.types.is_string_dtype(values.dtype)
    try:  # text is read as ISO 8601 (never guessed element by element)
        return pd.to_datetime(values, utc=True, format="ISO8601" if text else None)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what} holds values that are not times: "
                                f"{str(exc).splitlines()[0][:120]}") from None

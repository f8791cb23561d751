"""A version's reference profile, built from its training data (the baseline of drift).

The data is checked against the version's signature first (a column the signature names
must be there; columns it does not name, such as the label, are left out, and date-time
columns are not profiled), then the model predicts on it once, so the profile also holds
the distribution of its own predictions. At most ``MAX_ROWS`` rows are used (an even
sample of larger data, which changes the quantiles by far less than the drift tests can
see).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelhost import signature as signatures
from modelhost.entities import ColumnType, Signature
from modelhost.errors import InvalidInputError
from modelhost.flavors.base import LoadedModel
from modelhost.registry.scoring import first_line
from modelhost.stats.profile import build_reference
from modelhost.store.profiles import NewReference

MAX_ROWS = 100_000


def reference_from_data(loaded: LoadedModel, signature: Signature | None, data: Any, *,
                        source: str) -> NewReference:
    """The reference profile of ``data`` (a DataFrame, or anything with the signature's
    columns) for a model.

    Raises:
        InvalidInputError: the version has no column signature, or the data lacks
            columns of it or breaks its types (the message names them).
    """
    import pandas as pd

    if signature is None or not signature.columns:
        raise InvalidInputError("a reference profile needs a version with a column "
                                "signature (register it with an input example)")
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    names = [c.name for c in signature.columns]
    missing = [n for n in names if n not in frame.columns and not _optional(signature, n)]
    if missing:
        raise InvalidInputError(
            f"the reference data lacks {len(missing)} column(s) of the signature: "
            f"{', '.join(missing[:10])}; it has {', '.join(map(str, frame.columns[:20]))}")
    if len(frame) == 0:
        raise InvalidInputError("the reference data has no rows")
    if len(frame) > MAX_ROWS:
        frame = frame.iloc[np.linspace(0, len(frame) - 1, MAX_ROWS).astype(int)]
    present = [n for n in names if n in frame.columns]
    records = signatures.to_jsonable(frame[present], max_rows=MAX_ROWS)
    validated = signatures.InputValidator(signature).validate(records)
    try:
        predictions = loaded.predict(validated)
    except Exception as exc:  # a user model may raise anything: report it, store nothing
        raise InvalidInputError(f"the model could not predict on the reference data "
                                f"({first_line(exc)})") from exc
    # Date-times are not profiled (as Evidently does not test them by default): a time
    # stamp keeps moving, so it would always "drift".
    profiled = [c.name for c in signature.columns if c.type is not ColumnType.DATETIME]
    profile = build_reference(
        {n: validated[n].to_numpy() for n in profiled}, predictions,
        categorical_predictions=True if loaded.has_proba else None)
    return NewReference(profile=profile.to_dict(), digest=profile.digest, source=source,
                        rows=profile.rows)


def _optional(signature: Signature, name: str) -> bool:
    return any(c.name == name and not c.required for c in signature.columns)

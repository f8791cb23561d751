"""A job's JSON-lines result made into the frames ``modelhost batch --server`` writes."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from modelhost.batch.job_frames import json_lines, refused_frame, scored_frame


def _chunks(records: list[dict[str, object]], size: int) -> list[bytes]:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_lines_cut_anywhere_by_the_transport_are_read_whole() -> None:
    records = [{"row": i, "prediction": f"c{i}", "probabilities": [0.25, 0.75]}
               for i in range(50)]
    for size in (1, 7, 64, 1 << 20):
        assert json_lines(_chunks(records, size)) == records
    assert json_lines([]) == [] and json_lines([b"\n", b""]) == []


def test_scored_rows_keep_their_input_and_gain_predictions_in_result_order() -> None:
    inputs = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "kind": ["a", "b", "c", "d"]})
    results = [{"row": 0, "prediction": 1, "probabilities": [0.1, 0.9]},
               {"row": 2, "prediction": 0, "probabilities": [0.8, 0.2]},
               {"row": 3, "prediction": 1, "probabilities": [0.3, 0.7]}]
    frame = scored_frame(inputs, results, "1.2.0")
    assert list(frame.columns) == ["x", "kind", "prediction", "probability_0",
                                   "probability_1", "model_version"]
    assert frame["x"].tolist() == [1.0, 3.0, 4.0] and frame["kind"].tolist() == ["a", "c",
                                                                                  "d"]
    assert frame["prediction"].tolist() == [1, 0, 1]
    np.testing.assert_allclose(frame["probability_1"], [0.9, 0.2, 0.7])
    assert set(frame["model_version"]) == {"1.2.0"}
    named = scored_frame(inputs, results, "1.2.0", classes=["no", "yes"])
    assert "probability_yes" in named.columns
    # Classes that do not match the probabilities' width are not guessed at.
    assert "probability_1" in scored_frame(inputs, results, "1.2.0", classes=["a"]).columns
    # A regressor: no probabilities, no probability columns.
    plain = scored_frame(inputs, [{"row": 1, "prediction": 2.5}], "1.0.0")
    assert list(plain.columns) == ["x", "kind", "prediction", "model_version"]
    # The input is not changed.
    assert list(inputs.columns) == ["x", "kind"] and len(inputs) == 4


def test_refused_rows_are_text_with_nulls_and_their_reason() -> None:
    inputs = pd.DataFrame({"x": [1.0, np.nan, 3.0], "kind": ["a", None, "c"]})
    frame = refused_frame(inputs, [{"row": 1, "reason": "column 'x' is null",
                                    "input": {"x": None, "kind": None}}])
    assert list(frame.columns) == ["x", "kind", "reason"]
    assert all(str(t) == "string" for t in frame.dtypes)
    assert frame["x"].isna().all() and frame.loc[0, "reason"] == "column 'x' is null"
    assert refused_frame(inputs, []).empty

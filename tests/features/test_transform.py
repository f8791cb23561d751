"""A view's transformation: the same function in the training frame and in online
lookups, so that both give a model the same values; and its failures, named."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelhost import Client, Settings
from modelhost.errors import InvalidInputError
from modelhost.features import training_frame
from modelhost.features.sources import read_source
from tests.features.test_online import DEFINITIONS, T0, generated

TRANSFORMED = DEFINITIONS.replace(
    "    on_missing: default\n",
    "    on_missing: default\n    transformation: tests.features.transforms:log_spend\n", 1)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.chdir(tmp_path)
    generated(11).to_parquet("stats.parquet")
    pd.DataFrame({"customer_id": [1], "event_timestamp": [T0], "tier": ["gold"]}
                 ).to_csv("profile.csv", index=False)
    made = Client(Settings(home=tmp_path / "home"))
    made.features.apply(TRANSFORMED.replace("PATH", "stats.parquet")
                        .replace("PROFILE", "profile.csv"))
    return made


def test_training_and_serving_see_the_same_transformed_values(client: Client) -> None:
    repo = client.features.current().repo
    end = T0 + pd.Timedelta(days=10)
    client.features.materialize(end=end.to_pydatetime())
    source = generated(11)
    entities = source[["customer_id", "region"]].drop_duplicates().head(25)
    labels = entities.assign(event_timestamp=end)
    frame = training_frame(labels, repo, "churn", read_source=read_source)
    plain = training_frame(labels, repo.__class__(
        repo.entities, {**repo.views, "stats": _without(repo.views["stats"])}, repo.services),
        "churn", read_source=read_source)
    assert np.allclose(frame["spend"], np.log1p(plain["spend"]), equal_nan=True)
    assert (frame["orders"] <= 40).all() and (plain["orders"] > 40).any()
    online = client.features.get_online("churn", entities.to_dict(orient="records"),
                                        now=end.to_pydatetime())
    served = pd.DataFrame([row.values for row in online])
    assert np.allclose(served["spend"].astype(float), frame["spend"].to_numpy(),
                       equal_nan=True)
    assert served["orders"].tolist() == frame["orders"].astype(int).tolist()
    client.close()


def _without(view: object) -> object:
    import dataclasses

    return dataclasses.replace(view, transformation=None)  # type: ignore[type-var]


@pytest.mark.parametrize(("target", "said"), [
    ("tests.features.transforms:drops_rows", "must return a DataFrame with the rows"),
    ("tests.features.transforms:drops_a_column", "its transformation dropped spend"),
    ("tests.features.transforms:raises", "its transformation raised ValueError"),
    ("tests.features.transforms:NOT_A_FUNCTION", "is not a function"),
    ("tests.features.nowhere:f", "cannot be imported (ModuleNotFoundError)"),
])
def test_a_broken_transformation_is_named(client: Client, target: str, said: str) -> None:
    repo = client.features.apply(TRANSFORMED.replace(
        "tests.features.transforms:log_spend", target).replace("PATH", "stats.parquet")
        .replace("PROFILE", "profile.csv")).repo
    labels = pd.DataFrame({"customer_id": [1, 2], "region": ["eu", "us"],
                           "event_timestamp": T0 + pd.Timedelta(days=3)})
    with pytest.raises(InvalidInputError, match=f"feature view 'stats': .*{re.escape(said)}"
                       ) as e:
        training_frame(labels, repo, "churn", read_source=read_source)
    assert "/secret" not in e.value.message
    client.features.materialize(end=dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc))
    with pytest.raises(InvalidInputError, match=re.escape(said)):
        client.features.get_online("churn", [{"customer_id": 1, "region": "eu"},
                                             {"customer_id": 2, "region": "us"}])
    client.close()

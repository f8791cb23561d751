"""Which versions are scored on the event loop: verified array kernels only, through the
real app; their answers are the model's own."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from tests.fixtures_models import iris, iris_model
from tests.serving.conftest import records, serve

from modelhost import Client
from modelhost.serving.pool import INLINE_ROWS

pytestmark = pytest.mark.anyio


async def test_a_kernel_runs_in_place_any_other_model_in_its_thread(
        iris_client: Client) -> None:
    X, y = iris()
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    iris_client.registry.register(forest, name="forest", input_example=X.head(5))
    for stage in ("staging", "production"):
        iris_client.registry.transition("forest", "1.0.0", stage)
    body = {"inputs": records(4)}
    async with serve(iris_client) as (app, http):
        answers = {name: await http.post(f"/v1/models/{name}/predict", json=body)
                   for name in ("iris", "forest")}
        served = app.server.pool._served
        kernel, other = served[("iris", "1.0.0")], served[("forest", "1.0.0")]
        assert kernel.scorer.runs_arithmetic and not other.scorer.runs_arithmetic
        assert kernel.batcher.inline_rows == min(app.server.pool.options.max_batch_size,
                                                 INLINE_ROWS) > 0
        assert other.batcher.inline_rows == 0
    expected = iris_model().predict_proba(X.head(4))
    assert answers["iris"].status_code == 200
    np.testing.assert_allclose(answers["iris"].json()["probabilities"], expected,
                               rtol=1e-9, atol=1e-12)
    assert answers["forest"].status_code == 200
    np.testing.assert_allclose(answers["forest"].json()["probabilities"],
                               forest.predict_proba(X.head(4)))

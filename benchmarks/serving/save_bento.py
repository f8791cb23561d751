"""Train the benchmark models and save them in a BentoML model store.

Run by run.py with the BentoML virtualenv's Python and BENTOML_HOME set to a temporary
folder: ``python save_bento.py``. Saves ``bench-lr`` and ``bench-rf`` with
``bentoml.sklearn.save_model`` and prints one JSON line (versions, fingerprints).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import bentoml
import sklearn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, fingerprint, make_data, train


def main() -> None:
    X, y, X_test, _ = make_data()
    report: dict[str, object] = {"bentoml": bentoml.__version__, "sklearn": sklearn.__version__}
    for kind in MODELS:
        model = train(kind, X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bentoml.sklearn's deprecation notice
            saved = bentoml.sklearn.save_model(f"bench-{kind}", model)
        report[kind] = fingerprint(model, X_test)
        report[f"{kind}_tag"] = str(saved.tag)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

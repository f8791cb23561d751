"""Train the benchmark models and save them with ``mlflow.sklearn.save_model``.

Run by run.py with the MLflow virtualenv's Python:  python save_mlflow.py OUT_DIR
Writes OUT_DIR/lr and OUT_DIR/rf and prints one JSON line (versions, fingerprints).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import mlflow.sklearn
import sklearn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, fingerprint, frame, make_data, train


def main() -> None:
    out = Path(sys.argv[1])
    X, y, X_test, _ = make_data()
    report: dict[str, object] = {"mlflow": mlflow.__version__, "sklearn": sklearn.__version__}
    for kind in MODELS:
        model = train(kind, X, y)
        # MLflow 3 saves with skops and refuses a forest's Tree type unless it is trusted.
        trusted = ["sklearn.tree._tree.Tree"] if kind == "rf" else None
        mlflow.sklearn.save_model(model, str(out / kind), input_example=frame(X[:5]),
                                  skops_trusted_types=trusted)
        report[kind] = fingerprint(model, X_test)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

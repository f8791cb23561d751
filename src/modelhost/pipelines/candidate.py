"""The candidate model as it will be served: saved with its flavor and loaded back.

Gates judge this loaded model, not the Python object a step returned, so latency and
predictions are those of the artifact the register step would store (skops for
scikit-learn, onnxruntime for ONNX, ...).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from modelhost import signature as signatures  # pandas loads on first use
from modelhost.entities import Signature
from modelhost.flavors import Flavor, LoadedModel, flavor_for_object, get_flavor

EXAMPLE_ROWS = 5


class Candidate:
    """A model object plus what the gates need to call it like the server would.

    Args:
        model: the object a step returned (an estimator, an ONNX graph, ...).
        flavor: the flavor to save it with (detected from the object when None).
        example: its input example (a DataFrame or array), if the spec names one.
    """

    def __init__(self, model: object, *, flavor: str | None = None,
                 example: Any = None) -> None:
        self.model = model
        self._flavor_name = flavor
        self.example = _head(example)
        self._loaded: LoadedModel | None = None
        self._folder: Path | None = None

    @property
    def flavor(self) -> Flavor:
        return get_flavor(self._flavor_name) if self._flavor_name else flavor_for_object(
            self.model)

    @property
    def loaded(self) -> LoadedModel:
        """The model loaded back from its flavor's files (saved once, on first use)."""
        if self._loaded is None:
            flavor = self.flavor
            self._folder = Path(tempfile.mkdtemp(prefix="modelhost-candidate-"))
            saved = flavor.save(self.model, self._folder / "model")
            self._loaded = flavor.load(self._folder / "model", saved.meta)
        return self._loaded

    @property
    def signature(self) -> Signature | None:
        return signatures.infer_signature(self.example) if self.example is not None else None

    def served_input(self) -> Any:
        """The input example as the server hands it to the model: its JSON form checked
        and converted by the signature's validator."""
        signature = self.signature
        if signature is None:
            return None
        return signatures.InputValidator(signature).validate(signatures.to_jsonable(self.example,
                                                              max_rows=EXAMPLE_ROWS))

    def feature_columns(self, frame: Any, *, target: str | None) -> list[str]:
        """The columns of ``frame`` the model takes: the example's, else all but target."""
        columns = getattr(self.example, "columns", None)
        if columns is not None:
            return [str(c) for c in columns]
        return [str(c) for c in frame.columns if c != target]

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._loaded = None


def _head(example: Any) -> Any:
    if example is None:
        return None
    head = getattr(example, "iloc", None)
    if head is not None:
        return example.iloc[:EXAMPLE_ROWS]
    try:
        return example[:EXAMPLE_ROWS]
    except TypeError:
        return example


__all__ = ["EXAMPLE_ROWS", "Candidate"]

"""Signatures: infer them from data, compare two of them, enforce one on every request.

A signature is the input/output contract of a model version (PRODUCT.md §1). This package
infers it from training data (``infer``), decides the semver bump between two versions
(``compare``), turns a request payload into the model's input while reporting every problem
in the shape of PRODUCT.md §3.6 (``validate``), and keeps input examples as JSON
(``examples``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelhost.signature.compare import compare_signatures

if TYPE_CHECKING:
    from modelhost.signature.examples import example_from_jsonable, to_jsonable
    from modelhost.signature.infer import infer_signature
    from modelhost.signature.validate import InputValidator

# These need pandas (about a second to import): loaded on first use, so that importing
# modelhost, or comparing two signatures, does not pay for it.
_LAZY = {"InputValidator": "validate", "example_from_jsonable": "examples",
         "infer_signature": "infer", "to_jsonable": "examples"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelhost.signature' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modelhost.signature.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "InputValidator",
    "compare_signatures",
    "example_from_jsonable",
    "infer_signature",
    "to_jsonable",
]

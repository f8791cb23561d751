"""Signatures: infer them from data, compare two of them, enforce one on every request.

A signature is the input/output contract of a model version (PRODUCT.md §1). This package
infers it from training data (``infer``), decides the semver bump between two versions
(``compare``), turns a request payload into the model's input while reporting every problem
in the shape of PRODUCT.md §3.6 (``validate``), and keeps input examples as JSON
(``examples``).
"""

from modelhost.signature.compare import compare_signatures
from modelhost.signature.examples import example_from_jsonable, to_jsonable
from modelhost.signature.infer import infer_signature
from modelhost.signature.validate import InputValidator

__all__ = [
    "InputValidator",
    "compare_signatures",
    "example_from_jsonable",
    "infer_signature",
    "to_jsonable",
]

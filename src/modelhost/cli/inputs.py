"""Reading prediction inputs and input examples from JSON or CSV files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelhost.errors import FileNotFoundInputError, InvalidInputError


def read_input_file(path: Path) -> Any:
    """Rows from a ``.json`` (records, columns, or ``{"inputs": ...}``) or ``.csv`` file."""
    if not path.is_file():
        raise FileNotFoundInputError(str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import pandas as pd

        try:
            return pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{path.name} is not a readable CSV file") from exc
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{path.name} is not valid JSON") from exc
        if isinstance(data, dict) and "inputs" in data:
            data = data["inputs"]
        return data
    raise InvalidInputError(f"{path.name}: use a .json or .csv file")


def read_inline_json(text: str, *, what: str) -> Any:
    """Rows given as JSON on the command line (``{"inputs": ...}`` is unwrapped)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{what} is neither a file nor valid JSON: {exc}") from exc
    if isinstance(data, dict) and "inputs" in data:
        data = data["inputs"]
    return data

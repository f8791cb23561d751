"""Fixtures of the pipeline tests: the toy pipeline in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhost.pipelines import Pipeline, load_spec
from tests.pipelines.toy import write_toy


@pytest.fixture
def toy_dir(tmp_path: Path) -> Path:
    return tmp_path / "toy"


@pytest.fixture
def toy(toy_dir: Path) -> Pipeline:
    return load_spec(write_toy(toy_dir))

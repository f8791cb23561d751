"""The one path validator: every trick refused, honest names kept as they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelhost._paths import confined_path, safe_relpath
from modelhost.errors import InvalidInputError, PathEscapeError

ESCAPES = [
    "../x",
    "..",
    "a/../../x",
    "a/..",
    "/etc/passwd",
    "//server/share",
    "C:\\x",
    "C:/x",
    "c:x",
    "\\\\server\\share",
    "a\\..\\..\\x",
    "a\\b",
    "..%2fx",
    "..%2Fx",
    "%2e%2e/x",
    "%2E%2E/x",
    "%252e%252e/x",
    "%25252e%25252e/x",
    "a/%2e%2e/%2e%2e/x",
    "%2fetc/passwd",
    "%5c%5cserver",
    "．．/x",  # fullwidth full stops
    "..／x",  # fullwidth solidus
    "a／..／..／x",
    "％２ｅ％２ｅ/x",  # fullwidth percent-escapes, decoded after NFKC
    "a\x00b",
    "a%00b",
    "a\nb",
    "a\x1bb",
    "a\u202eb",  # right-to-left override
    "a\u200bb",  # zero-width space
    "%ff%fe",  # escapes that are not UTF-8
    "",
    ".",
    "./",
    "/",
    "a//..//x",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_safe_relpath_refuses(path: str) -> None:
    with pytest.raises(PathEscapeError) as excinfo:
        safe_relpath(path)
    assert isinstance(excinfo.value, InvalidInputError)
    assert excinfo.value.code == "invalid_input"


@pytest.mark.parametrize("value", [None, b"a", 3])
def test_safe_relpath_refuses_non_strings(value: object) -> None:
    with pytest.raises(PathEscapeError):
        safe_relpath(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("model.onnx", "model.onnx"),
        ("a/b/c.bin", "a/b/c.bin"),
        ("./a//b/", "a/b"),
        ("a/./b", "a/b"),
        ("..a/b..", "..a/b.."),
        ("...", "..."),
        ("a..b", "a..b"),
        (".hidden", ".hidden"),
        ("100%.txt", "100%.txt"),
        ("a%20b.txt", "a%20b.txt"),  # kept as given: decoding is only used to refuse
        ("modèle/数据.csv", "modèle/数据.csv"),
        ("ab:c", "ab:c"),
    ],
)
def test_safe_relpath_accepts_and_normalises(path: str, expected: str) -> None:
    assert safe_relpath(path) == expected


def test_confined_path_joins_inside_root(tmp_path: Path) -> None:
    assert confined_path(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"
    # The root need not exist: paths about to be created are validated too.
    assert confined_path(tmp_path / "missing", "x") == tmp_path / "missing" / "x"


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../b", "%2e%2e/x"])
def test_confined_path_refuses_escapes(tmp_path: Path, path: str) -> None:
    with pytest.raises(PathEscapeError):
        confined_path(tmp_path, path)


def test_confined_path_refuses_symlink_to_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathEscapeError):
        confined_path(root, "link/secret.txt")
    with pytest.raises(PathEscapeError):
        confined_path(root, "link")


def test_confined_path_refuses_symlink_even_inside_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "file").write_text("x")
    (tmp_path / "file-link").symlink_to(tmp_path / "file")
    with pytest.raises(PathEscapeError):
        confined_path(tmp_path, "alias/x")
    with pytest.raises(PathEscapeError):
        confined_path(tmp_path, "file-link")


def test_confined_path_refuses_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path.parent / "nowhere")
    with pytest.raises(PathEscapeError):
        confined_path(tmp_path, "dangling")


def test_confined_path_allows_root_reached_through_a_symlink(tmp_path: Path) -> None:
    # The root is the caller's choice (e.g. /var -> /private/var on macOS).
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    assert confined_path(alias, "a/b") == alias / "a" / "b"
    assert os.fspath(confined_path(alias, "a")).startswith(os.fspath(alias))

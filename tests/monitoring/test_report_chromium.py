"""The monitoring report in a real browser: ``modelhost monitor report`` writes the page
of a week of iris traffic (a reference, drift in the last two days, feedback), and
Debian's headless Chromium opens it from the file, offline: the DOM it built holds every
chart and the feature names, and its screenshot is a PNG of the window's size that is
not one colour.

``make system-deps`` (run by ``make test``) installs Chromium. Without it the test is
skipped, except under ``CI=true``, where it fails: CI must not pass without the browser.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from modelhost import Client
from modelhost.cli import run
from tests.monitoring.test_report import COLUMNS, H, register_iris, simulate

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1280, 2400
# As root Chromium needs --no-sandbox; the network flags stop its background requests
# (this page loads nothing, and the machine may have no network).
FLAGS = ["--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--hide-scrollbars", "--force-device-scale-factor=1"]


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        reason = ("Debian's chromium is not installed; 'make system-deps' installs it "
                  "(as root, or with sudo)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: under CI=true this test must run, not skip")
        pytest.skip(reason)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if tag == "svg" and found.get("class") == "chart":
            self.charts.append(found.get("data-chart") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _png(path: Path) -> tuple[int, int, int, np.ndarray]:
    """Width, height, bytes per pixel and the filtered scanlines of an 8-bit RGB(A)
    PNG, checking its signature and chunk checksums."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    assert header is not None
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6)  # RGB or RGBA
    bpp = 3 if colour == 2 else 4
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8)
    assert rows.size == height * (width * bpp + 1)
    return width, height, bpp, rows.reshape(height, width * bpp + 1)


def test_chromium_renders_the_report(chromium: str, home: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with Client() as client:
        register_iris(client)
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
        sent = simulate(client, start=now - 7 * 24 * H, end=now - dt.timedelta(minutes=1),
                        per_hour=5, shift_from=now - 48 * H)
    page = tmp_path / "report.html"
    assert run(["monitor", "report", "iris", "--window", "7d", "-o", str(page)]) == 0
    assert "iris 1.0.0, last 7d" in capsys.readouterr().out

    dom = _Dom()
    dom.feed(_browse(chromium, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout)
    assert dom.charts == ["requests", "errors", "latency", "drift", "drift-share",
                          *["distribution-numeric"] * len(COLUMNS),
                          "distribution-categorical", "quality"]
    text = " ".join(dom.text)
    for name in COLUMNS:
        assert name in text
    assert f"{sent.requests:,}" in text and "DATA DRIFT" in text
    assert "script" not in dom.tags

    shot = tmp_path / "report.png"
    _browse(chromium, tmp_path / "profile", f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={shot}", page.as_uri())
    width, height, bpp, rows = _png(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    # In an image of one colour, whatever PNG filter each row has, a row filters to at
    # most one pixel's worth of bytes that are not zero (the first row aside); rows of
    # text and charts filter to many. Most of a rendered report's rows have content.
    busy = np.count_nonzero(rows[:, 1:], axis=1) > bpp
    assert busy.mean() > 0.3, f"only {busy.sum()} of {height} rows have content"
    assert shot.stat().st_size > 50_000

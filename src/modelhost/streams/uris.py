"""Stream URIs as they may be shown: in messages, logs and metric labels."""

from __future__ import annotations

from urllib.parse import urlsplit


def describe(uri: str) -> str:
    """``uri`` without credentials or options (``redis://:pw@host/s?db=1`` is shown as
    ``redis://host/s``); at most 160 characters."""
    parts = urlsplit(uri)
    hosts = parts.netloc.rsplit("@", 1)[-1]  # host:port[,host:port], no user or password
    shown = f"{parts.scheme}://{hosts}{parts.path}" if parts.scheme else uri.split("@")[-1]
    return shown[:160]

"""A real server in-process: the ASGI app with its lifespan running, driven by httpx."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from tests.conftest import TODAY
from tests.fixtures_models import iris_example

from modelhost import Client
from modelhost.serving import ModelhostApp, PoolOptions, ServerOptions, create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serve(client: Client, **options: Any) -> AsyncIterator[tuple[ModelhostApp,
                                                                       httpx.AsyncClient]]:
    pool = options.pop("pool", PoolOptions(reload_interval_s=0.2))
    # Keys and audit log as `modelhost serve` wires them (used when options say auth=True).
    extra = {k: options.pop(k) for k in ("features", "observers") if k in options}
    app = create_app(client.registry, options=ServerOptions(pool=pool, **options),
                     keys=client.keys, audit=client.audit,
                     today=lambda: TODAY, **extra)
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield app, http


def records(rows: int = 3) -> list[dict[str, float]]:
    return iris_example(rows=rows).to_dict(orient="records")  # type: ignore[return-value]


__all__ = ["TODAY", "dt", "records", "serve"]

"""A real server in-process: the ASGI app with its lifespan running, driven by httpx."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from tests.conftest import TODAY
from tests.fixtures_models import iris_example, iris_model

from modelhost import Client
from modelhost.serving import ModelhostApp, PoolOptions, ServerOptions, create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serve(client: Client, **options: Any) -> AsyncIterator[tuple[ModelhostApp,
                                                                       httpx.AsyncClient]]:
    pool = options.pop("pool", PoolOptions(reload_interval_s=0.2))
    app = create_app(client.registry, options=ServerOptions(pool=pool, **options),
                     today=lambda: TODAY)
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield app, http


@pytest.fixture
def iris_client(sqlite_client: Client) -> Client:
    """A registry with iris 1.0.0 in production and 1.0.1 registered."""
    registry = sqlite_client.registry
    v1 = registry.register(iris_model(), name="iris", input_example=iris_example())
    registry.register(iris_model(C=0.01), name="iris", input_example=iris_example())
    registry.transition("iris", v1.version, "staging")
    registry.transition("iris", v1.version, "production")
    return sqlite_client


def records(rows: int = 3) -> list[dict[str, float]]:
    return iris_example(rows=rows).to_dict(orient="records")  # type: ignore[return-value]


__all__ = ["TODAY", "dt", "records", "serve"]

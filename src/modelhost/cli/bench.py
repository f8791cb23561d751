"""``modelhost bench``: a load test of a served model from the command line."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import typer

from modelhost.cli._app import JSON_OPTION, app, emit, make_table, out
from modelhost.errors import InvalidInputError, StoreUnavailableError


@app.command("bench")
def bench(
    name: str,
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="The server to load."),
    version: str | None = typer.Option(None, "--version", help="Pin a version or alias."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, max=1024),
    duration: float = typer.Option(10.0, "--duration", "-d", min=0.1, max=3600),
    rows: int = typer.Option(1, "--rows", min=1, max=10_000,
                             help="Rows per request, repeated from the input example."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Load a served model with concurrent requests built from its input example; print
    throughput and latency percentiles."""
    import asyncio

    result = asyncio.run(_run(name, url=url.rstrip("/"), version=version,
                              concurrency=concurrency, duration=duration, rows=rows,
                              progress=not as_json))
    emit(result, as_json=as_json, table=make_table(
        "REQUESTS", "REQ/S", "ROWS/S", "P50 MS", "P90 MS", "P99 MS", "MAX MS", "ERRORS",
        rows=[(result["requests"], f"{result['requests_per_s']:.0f}",
               f"{result['rows_per_s']:.0f}", f"{result['p50_ms']:.2f}",
               f"{result['p90_ms']:.2f}", f"{result['p99_ms']:.2f}",
               f"{result['max_ms']:.2f}",
               ", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "0")]))


async def _run(name: str, *, url: str, version: str | None, concurrency: int,
               duration: float, rows: int, progress: bool) -> dict[str, Any]:
    import asyncio
    import statistics

    import httpx
    from rich.progress import Progress

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as http:
        body = await _request_body(http, name, version, rows)
        headers = {"content-type": "application/json"}
        if version is not None:
            headers["x-model-version"] = version
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await http.post(f"/v1/models/{name}/predict", content=body,
                                               headers=headers)
                    code = str(response.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                statuses[code] += 1

        started = time.perf_counter()
        with Progress(transient=True, console=out.real, disable=not progress) as bar:
            task = bar.add_task(f"Loading {name} with {concurrency} connections",
                                total=duration)
            workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
            while not all(w.done() for w in workers):
                await asyncio.sleep(0.1)
                bar.update(task, completed=min(duration, time.perf_counter() - started))
            await asyncio.gather(*workers)
        elapsed = time.perf_counter() - started
    ok = statuses.pop("200", 0)
    ms = sorted(x * 1000 for x in latencies) or [0.0]
    return {"model": name, "version": version, "concurrency": concurrency,
            "duration_s": round(elapsed, 3), "requests": len(latencies), "ok": ok,
            "errors": dict(statuses), "requests_per_s": len(latencies) / elapsed,
            "rows_per_s": ok * rows / elapsed, "p50_ms": _pct(ms, 50), "p90_ms": _pct(ms, 90),
            "p99_ms": _pct(ms, 99), "max_ms": ms[-1], "mean_ms": statistics.fmean(ms)}


async def _request_body(http: Any, name: str, version: str | None, rows: int) -> bytes:
    import httpx
    import orjson

    ref = version or "latest"
    try:
        response = await http.get(f"/v1/models/{name}/versions/{ref}")
    except httpx.HTTPError:
        raise StoreUnavailableError("the server", "it cannot be reached at that URL") from None
    if response.status_code != 200:
        message = response.json().get("error", {}).get("message", response.text[:200])
        raise InvalidInputError(f"the server answered {response.status_code}: {message}")
    example = response.json().get("input_example")
    if not isinstance(example, list) or not example:
        raise InvalidInputError(f"{name} has no input example in records form to load with")
    records = (example * (rows // len(example) + 1))[:rows]
    return orjson.dumps({"inputs": records})


def _pct(sorted_ms: list[float], pct: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(pct / 100 * len(sorted_ms)) - 1))
    return sorted_ms[index]

"""``modelhost stream``: score the events of a stream with a model's deployment."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import TYPE_CHECKING

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, out

if TYPE_CHECKING:
    from modelhost.config import Settings
    from modelhost.streams import StreamOptions
    from modelhost.streams.config import StreamConfig
    from modelhost.streams.consumer import Counts


@app.command("stream")
def stream(
    name: str,
    source: str = typer.Option(..., "--source", help="Where the events come from: "
                               "redis://host:port/STREAM."),
    sink: str = typer.Option(..., "--sink", help="Where the results go: "
                             "redis://host:port/STREAM."),
    group: str = typer.Option("modelhost", "--group", help="The consumer group: the "
                              "consumers of one group share the events."),
    consumer: str | None = typer.Option(None, "--consumer", help="This consumer's name "
                                        "in the group; one per running process "
                                        "(default: HOST-NAME). A restart under the same "
                                        "name reads its unfinished events first."),
    dead_letter: str | None = typer.Option(None, "--dead-letter", help="Where events "
                                           "that cannot be scored go, with the reason "
                                           "(default: the source stream's name + -dead)."),
    batch: int = typer.Option(256, "--batch", min=1, max=100_000,
                              help="Events in flight at once."),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, max=100,
                                     help="Tries of an event before its dead letter."),
    claim_idle: float = typer.Option(30.0, "--claim-idle", min=0.01, help="Seconds "
                                     "after which another consumer's unfinished events "
                                     "are taken over."),
    idle_exit: float | None = typer.Option(None, "--idle-exit", min=0.0, help="Stop once "
                                           "no event came for this many seconds (a "
                                           "backfill; default: run until stopped)."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=1, max=65535,
                                            help="Serve Prometheus metrics (the stream's "
                                            "lag, events, latency) on this port."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host",
                                     help="Interface of --metrics-port."),
    from_now: bool = typer.Option(False, "--from-now", help="A new group starts with the "
                                  "events added from now (default: every event in the "
                                  "stream)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score a stream's events with the model's deployment (routing, validation,
    batching, monitoring as over HTTP) until stopped (Ctrl+C, SIGTERM): the events in
    flight are finished, written and acknowledged first."""
    from modelhost.streams import StreamOptions, dead_letter_uri
    from modelhost.streams.config import StreamConfig

    settings = STATE.settings()
    STATE.client().registry.get_model(name)  # an unknown model: exit 3 now
    config = StreamConfig(model=name, source=source, sink=sink, dead_letter=dead_letter
                          or dead_letter_uri(source), group=group, batch=batch,
                          max_attempts=max_attempts, claim_idle_s=claim_idle,
                          from_now=from_now)
    consumer_name = consumer or f"{socket.gethostname()}-{name}"
    options = StreamOptions(batch=batch, max_attempts=max_attempts, idle_exit_s=idle_exit)
    _check_uris(config)
    if not as_json:  # the URIs without credentials: this line ends up in logs
        from modelhost.streams.uris import describe

        out.print(f"Scoring {describe(source)} with {name} -> {describe(sink)} (dead "
                  f"letters: {describe(config.dead_letter or '')}; group {group}, "
                  f"consumer {consumer_name}); Ctrl+C to stop", markup=False,
                  highlight=False)
    counts = asyncio.run(_run(settings, config, consumer_name, options,
                              metrics=(metrics_host, metrics_port) if metrics_port else None))
    emit({"model": name, "scored": counts.scored, "dead_letters": counts.dead,
          "retries": counts.retries, "write_failures": counts.write_failures},
         as_json=as_json,
         table=f"Stopped: {counts.scored:,} events scored, {counts.dead:,} dead letters")


def _check_uris(config: StreamConfig) -> None:
    """Every URI names a broker we know, before anything starts (exit 1 otherwise)."""
    from modelhost.streams import open_sink, open_source

    open_source(config.source, group=config.group, consumer="-")
    for uri in (config.sink, config.dead_letter or ""):
        open_sink(uri)


async def _run(settings: Settings, config: StreamConfig, consumer_name: str,
               options: StreamOptions, *, metrics: tuple[str, int] | None) -> Counts:
    from modelhost.asgi import build_app
    from modelhost.streams.task import consumer_for

    app = build_app(settings)
    async with app.running(wait_for_models=True):
        if metrics is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics[1], addr=metrics[0], registry=app.server.metrics.registry)
        consumer = consumer_for(config, app.server, name=consumer_name, options=options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        try:
            await consumer.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return consumer.counts

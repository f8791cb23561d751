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
    from modelhost.streams import Sink, Source, StreamOptions
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
    from_now: bool = typer.Option(False, "--from-now", help="A new group starts with the "
                                  "events added from now (default: every event in the "
                                  "stream)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score a stream's events with the model's deployment (routing, validation,
    batching, monitoring as over HTTP) until stopped (Ctrl+C, SIGTERM): the events in
    flight are finished, written and acknowledged first."""
    from modelhost.streams import StreamOptions, dead_letter_uri, open_sink, open_source

    settings = STATE.settings()
    STATE.client().registry.get_model(name)  # an unknown model: exit 3 now
    consumer_name = consumer or f"{socket.gethostname()}-{name}"
    options = StreamOptions(batch=batch, max_attempts=max_attempts, idle_exit_s=idle_exit)
    dead = dead_letter or dead_letter_uri(source)
    ends = (open_source(source, group=group, consumer=consumer_name,
                        claim_idle_ms=int(claim_idle * 1000),
                        start="$" if from_now else "0", in_flight=batch),
            open_sink(sink), open_sink(dead))
    if not as_json:
        out.print(f"Scoring {source} with {name} -> {sink} (dead letters: {dead}; group "
                  f"{group}, consumer {consumer_name}); Ctrl+C to stop", markup=False,
                  highlight=False)
    counts = asyncio.run(_run(settings, name, *ends, options))
    emit({"model": name, "scored": counts.scored, "dead_letters": counts.dead,
          "retries": counts.retries, "write_failures": counts.write_failures},
         as_json=as_json,
         table=f"Stopped: {counts.scored:,} events scored, {counts.dead:,} dead letters")


async def _run(settings: Settings, name: str, source: Source, sink: Sink, dead: Sink,
               options: StreamOptions) -> Counts:
    from modelhost.asgi import build_app
    from modelhost.streams import StreamConsumer

    app = build_app(settings)
    async with app.running(wait_for_models=True):
        server = app.server
        consumer = StreamConsumer(name, source, sink, dead, server.predictor,
                                  server.observers, options=options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        try:
            await consumer.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return consumer.counts

"""The agents: short loops named for their job, over a ledger built by `registre.bootstrap`.

They decode nothing and touch no database: each hands what it reads to the ledger (apply a
batch, publish what the ledger queued, sweep, beat) and the ledger does the work in
PostgreSQL. Concurrency stays 1 and one batch is applied at a time (`processors.pipeline`):
the stream takes the next batch while one waits for PostgreSQL, and a batch's events are
acknowledged to Faust only once it is committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import faust

from events.log import LogRecord
from processors.app import WorkerConfig, create_app, ledger_topic, raw_topic
from processors.pipeline import Pipeline

OutboxRow = tuple[int, str, bytes, bytes, list[tuple[str, bytes]]]  # id, topic, key, value, hdrs
Send = Callable[[list[OutboxRow]], Awaitable[None]]


class Ledger(Protocol):
    """What the agents ask of the ledger (`projections.ledger.LedgerProjections`)."""

    async def start(self) -> None: ...
    async def apply(self, records: Sequence[LogRecord]) -> object: ...
    async def publish_pending(self, send: Send) -> None: ...
    async def sweep(self) -> None: ...
    async def retry_problems(self) -> None: ...
    async def heartbeat(self) -> None: ...


def incoming(message: faust.types.tuples.Message) -> LogRecord:
    """A Faust message as the one record type of the log."""
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    return LogRecord(message.topic, message.partition, message.offset, message.key,
                     message.value, tuple((k, v or b"") for k, v in headers),
                     int((message.timestamp or 0) * 1000))


def build_app(config: WorkerConfig, ledger: Ledger) -> faust.App:
    """The worker's Faust app: one agent over the ledger topic and the ledger's timers."""
    app = create_app(config)
    topic = ledger_topic(app)
    # what the outbox publishes: the ledger's own facts, dead letters, checkpoints
    topics = {t.get_topic_name(): t
              for t in (topic, raw_topic(app, "deadletter"), raw_topic(app, "checkpoints"))}

    async def send(rows: list[OutboxRow]) -> None:
        pending = [await topics[name].send(key=key or None, value=value, headers=headers)
                   for _, name, key, value, headers in rows]
        for fut in pending:
            await fut  # acknowledged before the outbox row is deleted

    @app.agent(topic, concurrency=1, name="apply_ledger_events")
    async def apply_ledger_events(stream: faust.StreamT) -> None:
        async def apply_then_ack(taken: list[faust.EventT]) -> None:
            await ledger.apply([incoming(e.message) for e in taken])
            for event in taken:  # committed: only now may Faust commit past them
                await stream.ack(event)
            await ledger.publish_pending(send)  # the ledger's own facts and dead letters

        pipeline: Pipeline[faust.EventT] = Pipeline(apply_then_ack, config.batch_size)
        try:
            async for events in stream.noack_take(config.batch_size,
                                                  within=config.batch_within):
                await pipeline.add(events)  # applied while the stream takes the next ones
        finally:
            await pipeline.close()

    @app.timer(interval=1.0)
    async def publish_ledger_facts() -> None:
        await ledger.publish_pending(send)

    @app.timer(interval=config.sweep_seconds)
    async def sweep_retention() -> None:
        await ledger.sweep()
        await ledger.publish_pending(send)

    @app.timer(interval=config.retry_seconds)
    async def retry_problems() -> None:
        await ledger.retry_problems()
        await ledger.publish_pending(send)

    @app.task
    async def register_worker() -> None:
        await ledger.start()

    @app.timer(interval=10.0)
    async def heartbeat() -> None:
        await ledger.heartbeat()

    return app

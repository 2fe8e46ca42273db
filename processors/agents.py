"""Agents: short loops named for their job. They decode nothing themselves: they hand
batches to the service layer and report dead letters."""

from __future__ import annotations

import faust
import structlog

from processors.app import WorkerConfig, create_app, deadletter_topic, ledger_topic
from processors.service import LedgerService
from projections.writer import Incoming

log = structlog.get_logger("registre.processors")


def incoming(message: faust.types.tuples.Message) -> Incoming:
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    return Incoming(message.topic, message.partition, message.offset, message.key,
                    message.value, tuple((k, v or b"") for k, v in headers),
                    int((message.timestamp or 0) * 1000))


def dead_letter_headers(item: Incoming, reason: str, event_type: str | None) -> list:
    return [
        ("registre-reason", reason[:300].encode()),
        ("registre-source-topic", item.topic.encode()),
        ("registre-source-partition", str(item.partition).encode()),
        ("registre-source-offset", str(item.offset).encode()),
        ("registre-type", (event_type or "").encode()),
    ]


def build(config: WorkerConfig | None = None) -> faust.App:
    config = config or WorkerConfig.from_env()
    app = create_app(config)
    ledger = ledger_topic(app)
    deadletters = deadletter_topic(app)
    service = LedgerService(config.database_url, config.worker_id)

    @app.agent(ledger, concurrency=1, name="apply_ledger_events")
    async def apply_ledger_events(stream: faust.StreamT) -> None:
        async for events in stream.take_events(config.batch_size, within=config.batch_within):
            outcome = await service.apply([incoming(e.message) for e in events])
            for item, reason, event_type in outcome.dead:
                # The payload stays in the log (ciphertext); the dead letter says where and why.
                await deadletters.send(key=None, value=b"",
                                       headers=dead_letter_headers(item, reason, event_type))

    @app.task
    async def register_worker() -> None:
        await service.heartbeat(starting=True)
        log.info("processor started", worker_id=config.worker_id)

    @app.timer(interval=10.0)
    async def heartbeat() -> None:
        await service.heartbeat()

    app.registre_service = service  # for the other agents' modules and tests
    return app

"""Agents: short loops named for their job. They decode nothing themselves: they hand
batches to the service layer and report dead letters."""

from __future__ import annotations

import asyncio
import time

import faust
import psycopg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from processors.app import WorkerConfig, create_app, deadletter_topic, ledger_topic
from processors.rules.integrity import chain_form
from processors.rules.policy import policy_from_env
from projections import outbox
from projections.erasure_store import enforce_hook, sweep
from projections.hooks import projection_hooks
from projections.integrity_store import achain_batch, aload_or_create_signing_key
from projections.ledger import LedgerService
from projections.writer import Incoming, Outcome

log = structlog.get_logger("registre.processors")


def incoming(message: faust.types.tuples.Message) -> Incoming:
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = headers.items()
    return Incoming(message.topic, message.partition, message.offset, message.key,
                    message.value, tuple((k, v or b"") for k, v in headers),
                    int((message.timestamp or 0) * 1000))


def build(config: WorkerConfig | None = None) -> faust.App:
    config = config or WorkerConfig.from_env()
    app = create_app(config)
    ledger = ledger_topic(app)
    deadletters = deadletter_topic(app)
    policy = policy_from_env(config.env)
    clock = config.clock
    signing: dict[str, Ed25519PrivateKey] = {}

    async def chain_records(cur: psycopg.AsyncCursor, out: Outcome) -> None:
        """Tamper evidence: chain every new record and sign a checkpoint, in the batch."""
        await achain_batch(cur, [chain_form(i) for i in out.items], signing["key"])

    hooks = [hook for hook, _ in projection_hooks(config.master_key)]
    hooks += [enforce_hook(policy, clock), chain_records]
    service = LedgerService(config.database_url, config.worker_id, hooks)

    async def ensure_signing_key() -> None:
        if "key" not in signing:
            conn = await service.connection("heartbeat")
            signing["key"] = await aload_or_create_signing_key(conn, config.master_key)

    topics = {t.get_topic_name(): t for t in (ledger, deadletters)}

    async def publish_rows(rows: list[outbox.Row]) -> None:
        pending = [await topics[topic].send(key=key or None, value=value, headers=headers)
                   for _, topic, key, value, headers in rows]
        for fut in pending:
            await fut  # acknowledged before the outbox row is deleted

    drain_lock = asyncio.Lock()

    async def drain_outbox() -> None:
        async with drain_lock:
            while await outbox.drain_async(await service.connection("outbox"), publish_rows):
                pass

    @app.agent(ledger, concurrency=1, name="apply_ledger_events")
    async def apply_ledger_events(stream: faust.StreamT) -> None:
        async for events in stream.take_events(config.batch_size, within=config.batch_within):
            await ensure_signing_key()
            started = time.perf_counter()
            await service.apply([incoming(e.message) for e in events])
            applied_ms = (time.perf_counter() - started) * 1000
            await drain_outbox()  # the ledger's own events and the dead letters of the batch
            log.debug("batch", events=len(events), applied_ms=round(applied_ms, 1),
                      total_ms=round((time.perf_counter() - started) * 1000, 1))

    @app.timer(interval=1.0)
    async def publish_ledger_facts() -> None:
        await drain_outbox()

    @app.timer(interval=config.sweep_seconds)
    async def sweep_retention() -> None:
        events = await sweep(await service.connection("sweep"), policy, clock())
        if events:
            log.info("retention sweep", events=len(events))
        await drain_outbox()

    @app.task
    async def register_worker() -> None:
        await service.heartbeat(starting=True)
        log.info("processor started", worker_id=config.worker_id)

    @app.timer(interval=10.0)
    async def heartbeat() -> None:
        await service.heartbeat()

    app.registre_service = service  # for the other agents' modules and tests
    return app

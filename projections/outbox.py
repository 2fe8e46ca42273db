"""The outbox: registre's own events, stored in the same transaction as the change they
record, and published to the ledger afterwards (by the processors, or by the CLI command that
made the change). Publishing twice is harmless: downstream, an event id is applied once."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable, Iterable

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.types.json import Jsonb

from events.catalogue import load_catalogue, topic_name
from events.codec import encode
from events.model import Event
from events.publisher import headers_for
from processors.rules.integrity import (
    SIGNATURE_HEADER,
    Checkpoint,
    encode_checkpoint,
    sign_ledger_event,
)

INSERT_SQL = (
    "INSERT INTO projections.outbox (event_id, topic, key, value, headers)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
)
CLAIM_SQL = (
    "SELECT id, topic, key, value, headers FROM projections.outbox ORDER BY id"
    " LIMIT %s FOR UPDATE SKIP LOCKED"
)
Row = tuple[int, str, bytes, bytes, list[tuple[str, bytes]]]
_DEAD_NS = uuid.UUID("4d7f0a8e-1b9c-4f52-8a53-0c1e2d3f4a5b")
_CHECKPOINT_NS = uuid.UUID("0b6f3a51-7d0c-4c7e-9a1e-5f2d8c3b9e44")


def _headers(pairs: Iterable[tuple[str, bytes]]) -> Jsonb:
    return Jsonb([[k, base64.b64encode(v).decode()] for k, v in pairs])


def outbox_rows(events: Iterable[Event], signing_key: Ed25519PrivateKey) -> list[tuple]:
    """Encode registre's events (they hold no personal field, so no key is needed) and sign
    each: the processors accept a ledger fact only with the ledger's signature."""
    catalogue = load_catalogue()
    topic = topic_name("ledger")
    rows = []
    for e in events:
        key, value = e.subject_id.encode(), encode(e, {}, catalogue)
        signature = sign_ledger_event(signing_key, key, value)
        headers = [*headers_for(e.type, catalogue), (SIGNATURE_HEADER, signature)]
        rows.append((e.event_id, topic, key, value, _headers(headers)))
    return rows


async def add(cur: psycopg.AsyncCursor, events: Iterable[Event],
              signing_key: Ed25519PrivateKey) -> None:
    rows = outbox_rows(events, signing_key)
    if rows:
        await cur.executemany(INSERT_SQL, rows)


async def add_checkpoints(cur: psycopg.AsyncCursor, checkpoints: Iterable[Checkpoint]) -> None:
    """Queue each new checkpoint for the checkpoint topic: a copy outside PostgreSQL."""
    topic = topic_name("checkpoints")
    rows = [(uuid.uuid5(_CHECKPOINT_NS, f"{cp.topic}/{cp.partition}/{cp.offset}"), topic,
             f"{cp.topic}/{cp.partition}".encode(), encode_checkpoint(cp), _headers(()))
            for cp in checkpoints]
    if rows:
        await cur.executemany(INSERT_SQL, rows)


def dead_letter_row(topic: str, partition: int, offset: int, reason: str,
                    event_type: str | None, subject_id: str | None) -> tuple:
    """A dead letter: where the record is and why it was not applied, with no payload (the
    record stays in the log as it was). Keyed by the subject when the record named one."""
    headers = [
        ("registre-reason", reason[:300]), ("registre-source-topic", topic),
        ("registre-source-partition", str(partition)), ("registre-source-offset", str(offset)),
        ("registre-type", event_type or ""),
    ]
    event_id = uuid.uuid5(_DEAD_NS, f"{topic}/{partition}/{offset}")
    return (event_id, topic_name("deadletter"), (subject_id or "").encode(), b"",
            _headers((k, v.encode()) for k, v in headers))


def _decode(raw: tuple) -> Row:
    id_, topic, key, value, headers = raw
    return id_, topic, bytes(key), bytes(value), [(k, base64.b64decode(v)) for k, v in headers]


async def drain_async(conn: psycopg.AsyncConnection,
                      send: Callable[[list[Row]], Awaitable[None]], limit: int = 500) -> int:
    """Publish pending rows with ``send`` (which must wait for acks), then delete them."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(CLAIM_SQL, (limit,))
        rows = [_decode(r) for r in await cur.fetchall()]
        if rows:
            await send(rows)
            await cur.execute("DELETE FROM projections.outbox WHERE id = ANY(%s)",
                              ([r[0] for r in rows],))
    return len(rows)


async def into_journal(conn: psycopg.AsyncConnection, limit: int = 500) -> int:
    """Move pending rows into the journal, in one transaction: the relay hands them on."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "WITH moved AS (DELETE FROM projections.outbox WHERE id IN (SELECT id FROM"
            " projections.outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING id, event_id, topic, key, value, headers)"
            " INSERT INTO journal.records (event_id, topic, key, value, headers)"
            " SELECT event_id, topic, key, value, headers FROM moved ORDER BY id", (limit,))
        moved = cur.rowcount
        if moved:
            await cur.execute("NOTIFY journal")
    return moved


def drain(conn: psycopg.Connection, send: Callable[[list[Row]], None],
          limit: int = 500) -> int:
    """The same as `drain_async`, for the command line."""
    total = 0
    while True:
        with conn.transaction():
            rows = [_decode(r) for r in conn.execute(CLAIM_SQL, (limit,)).fetchall()]
            if rows:
                send(rows)
                conn.execute("DELETE FROM projections.outbox WHERE id = ANY(%s)",
                             ([r[0] for r in rows],))
        total += len(rows)
        if len(rows) < limit:
            return total


def pending(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM projections.outbox").fetchone()[0]

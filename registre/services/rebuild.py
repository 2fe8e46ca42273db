"""`registre rebuild`: drop every projection and replay the ledger from offset 0.

The whole rebuild is one transaction holding the projection lock: readers see the old
projection until it commits, live processors wait and then continue from the rebuilt
positions, and a failed rebuild changes nothing.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tqdm import tqdm

from events.log import LogReader
from processors.rules.fold import Fold
from projections.integrity_store import arrivals
from projections.writer import PROJECTION_LOCK, Hook, Incoming, apply_batch

RESET_SQL = (
    "DELETE FROM projections.customer_view",
    "DELETE FROM projections.applied_events",
    "DELETE FROM projections.dead_letters",
    "UPDATE projections.offsets SET next_offset = 0 WHERE consumer = 'ledger'",
)
BATCH = 20_000  # a subject's events spread over a partition: fewer view upserts per subject


async def _rebuild(bootstrap: str, database_url: str, fold: Fold, hooks: Sequence[Hook],
                   resets: Sequence[str], progress: bool, clock: Callable[[], datetime],
                   ledger_key: Ed25519PublicKey) -> int:
    reader = LogReader(bootstrap)
    total = sum(reader.end_offsets().values())
    applied = 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECTION_LOCK,))
            for sql in (*RESET_SQL, *resets):
                await conn.execute(sql)
            bar = tqdm(total=total, unit="ev", file=sys.stderr, disable=not progress,
                       desc="rebuild")
            batch: list[Incoming] = []
            for rec in reader.read():
                batch.append(rec)
                if len(batch) >= BATCH:
                    applied += await _replay(conn, batch, fold, hooks, bar, clock(), ledger_key)
                    batch = []
            if batch:
                applied += await _replay(conn, batch, fold, hooks, bar, clock(), ledger_key)
            bar.close()
    reader.close()
    return applied


async def _replay(conn: psycopg.AsyncConnection, batch: list[Incoming], fold: Fold,
                  hooks: Sequence[Hook], bar: tqdm, now: datetime,
                  ledger_key: Ed25519PublicKey) -> int:
    """Apply one batch as the live processors did: each record dated as of its first
    application (its checkpoint's signing instant), else as of ``now``."""
    first = await arrivals(conn, batch)
    await apply_batch(conn, batch, fold, hooks=hooks, archive=False, ledger_key=ledger_key,
                      arrival=lambda item: first.get((item.partition, item.offset), now))
    bar.update(len(batch))
    return len(batch)


def rebuild(bootstrap: str, database_url: str, fold: Fold,
            registered: Sequence[tuple[Hook, Sequence[str]]], clock: Callable[[], datetime],
            ledger_key: Ed25519PublicKey, progress: bool = True) -> int:
    """Replay the whole ledger into fresh projections; returns the records replayed.

    ``registered``: every projection hook with the statements that empty its tables. Side
    effects of the live processors (key destruction, the outbox) are not repeated: what they
    did is already in the log, and is folded like any other event.
    """
    hooks = [hook for hook, _ in registered]
    resets = [sql for _, sqls in registered for sql in sqls]
    return asyncio.run(_rebuild(bootstrap, database_url, fold, hooks, resets, progress, clock,
                                ledger_key))

"""The processors' service layer: apply batches to PostgreSQL, never lose or stall on one event.

A batch is applied in one transaction. A database that is unreachable is retried (nothing is
acknowledged meanwhile); an event that makes the batch fail on its own is isolated by applying
the batch one event at a time, and lands in the dead letters with its reason.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
import structlog

from events.catalogue import load_catalogue
from processors.rules.fold import apply as fold
from projections.writer import Hook, Incoming, Outcome, apply_batch

log = structlog.get_logger("registre.processors")


def _fail_fold(reason: str):
    def refuse(view, record):  # noqa: ANN001, ANN202 - a Fold that rejects everything
        raise ValueError(reason)

    return refuse


class LedgerService:
    def __init__(self, database_url: str, worker_id: str, hooks: Sequence[Hook] = ()) -> None:
        self.database_url = database_url
        self.worker_id = worker_id
        self.hooks = list(hooks)
        self.catalogue = load_catalogue()
        self._conns: dict[str, psycopg.AsyncConnection] = {}

    async def connection(self, role: str = "batch") -> psycopg.AsyncConnection:
        """One connection per concurrent job (batch, outbox, sweep, heartbeat), so that the
        transactions of agents and timers never interleave on one connection."""
        conn = self._conns.get(role)
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
            self._conns[role] = conn
        return conn

    async def close(self) -> None:
        for conn in self._conns.values():
            await conn.close()

    async def heartbeat(self, starting: bool = False) -> None:
        conn = await self.connection("heartbeat")
        now = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO projections.processors (worker_id, pid, host, started_at, heartbeat_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE SET"
            " heartbeat_at = EXCLUDED.heartbeat_at, pid = EXCLUDED.pid"
            + (", started_at = EXCLUDED.started_at" if starting else ""),
            (self.worker_id, os.getpid(), socket.gethostname(), now, now),
        )

    async def apply(self, items: Sequence[Incoming]) -> Outcome:
        """Apply a batch; retries while the database is down; never raises for bad events."""
        delay = 0.5
        while True:
            try:
                conn = await self.connection()
                return await self._apply(conn, items)
            except psycopg.OperationalError as exc:
                log.warning("database unavailable, retrying", error=type(exc).__name__,
                            delay=delay)
                self._conns.pop("batch", None)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _apply(self, conn: psycopg.AsyncConnection, items: Sequence[Incoming]) -> Outcome:
        try:
            out = await apply_batch(conn, items, fold, hooks=self.hooks, catalogue=self.catalogue)
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the event that broke the batch
            if len(items) == 1:
                reason = f"could not be applied ({type(exc).__name__})"
                log.warning("event dead-lettered", partition=items[0].partition,
                            offset=items[0].offset, reason=reason)
                return await apply_batch(conn, items, _fail_fold(reason), hooks=self.hooks,
                                         catalogue=self.catalogue)
            merged = Outcome()
            for item in items:
                one = await self._apply(conn, [item])
                merged.applied += one.applied
                merged.dead += one.dead
                merged.duplicates += one.duplicates
                merged.already_applied += one.already_applied
                merged.views.update(one.views)
            return merged
        if out.dead:
            for item, reason, _ in out.dead:
                log.warning("event dead-lettered", partition=item.partition, offset=item.offset,
                            reason=reason)
        return out

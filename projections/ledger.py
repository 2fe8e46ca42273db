"""The processors' side of PostgreSQL: apply batches, publish the outbox, sweep, beat.

A batch is applied in one transaction (`projections.writer.apply_batch`). A database that is
unreachable is retried (nothing is acknowledged meanwhile); an event that makes the batch fail on
its own is isolated by applying the batch one event at a time, and lands in the dead letters with
its reason. The timers' jobs (outbox, sweep, heartbeat) log and skip a round when the database is
down rather than stop the worker: the next round tries again.

Built by `registre.bootstrap` with the fold, the projection hooks, the policy and the clock; the
Faust agents (`processors.agents`) only call its methods.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.catalogue import Catalogue, load_catalogue
from events.log import LogRecord
from processors.rules.fold import Fold
from processors.rules.integrity import placeholder
from processors.rules.policy import Policy
from projections import outbox
from projections.erasure_store import retry_problems, sweep
from projections.integrity_store import achain_batch, latest_from, send_latest_checkpoints
from projections.writer import Hook, Outcome, ReadingHook, Rows, WrittenViews, apply_batch

log = structlog.get_logger("registre.processors")
Clock = Callable[[], datetime]
T = TypeVar("T")
MAX_RETRY_DELAY = 10.0


class LedgerProjections:
    """One worker's connection to the projections: one connection per concurrent job."""

    def __init__(self, database_url: str, worker_id: str, fold: Fold, hooks: Sequence[Hook],
                 policy: Policy, clock: Clock, signing_key: Ed25519PrivateKey,
                 catalogue: Catalogue | None = None, journal: bool = False) -> None:
        self.database_url = database_url
        self.worker_id = worker_id
        self.fold = fold
        self.hooks = list(hooks)
        self.policy = policy
        self.clock = clock
        self.catalogue = catalogue or load_catalogue()
        self._conns: dict[str, psycopg.AsyncConnection] = {}
        self._signing = signing_key
        self._journal = journal  # the outbox goes to the journal (the relay hands it on)
        self._ledger_key = signing_key.public_key()  # ledger facts must carry its signature
        self._outbox_lock = asyncio.Lock()

    async def connection(self, role: str = "batch") -> psycopg.AsyncConnection:
        """One connection per job (batch, outbox, sweep, heartbeat), so that the transactions
        of the agent and of the timers never interleave on one connection."""
        conn = self._conns.get(role)
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
            self._conns[role] = conn
        return conn

    async def close(self) -> None:
        for conn in self._conns.values():
            await conn.close()

    async def _retrying(self, role: str, job: Callable[[psycopg.AsyncConnection],
                                                       Awaitable[T]]) -> T:
        """Run ``job`` on the role's connection until the database answers."""
        delay = 0.5
        while True:
            try:
                return await job(await self.connection(role))
            except psycopg.OperationalError as exc:
                log.warning("database unavailable, retrying", job=role,
                            error=type(exc).__name__, delay=delay)
                self._conns.pop(role, None)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _once(self, role: str, job: Callable[[psycopg.AsyncConnection],
                                                   Awaitable[Any]]) -> None:
        """Run a timer's job; when the database is down, log and leave it to the next round."""
        try:
            await job(await self.connection(role))
        except psycopg.OperationalError as exc:
            log.warning("database unavailable, skipping a round", job=role,
                        error=type(exc).__name__)
            self._conns.pop(role, None)

    # --- start and heartbeat -----------------------------------------------------------------

    async def start(self) -> None:
        """Register the worker, waiting for the database."""
        await self._retrying("heartbeat", lambda conn: self._beat(conn, starting=True))
        log.info("processor started", worker_id=self.worker_id)

    async def heartbeat(self) -> None:
        await self._once("heartbeat", self._beat)

    async def _beat(self, conn: psycopg.AsyncConnection, starting: bool = False) -> None:
        now = self.clock()
        await conn.execute(
            "INSERT INTO projections.processors (worker_id, pid, host, started_at, heartbeat_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE SET"
            " heartbeat_at = EXCLUDED.heartbeat_at, pid = EXCLUDED.pid"
            + (", started_at = EXCLUDED.started_at" if starting else ""),
            (self.worker_id, os.getpid(), socket.gethostname(), now, now),
        )

    # --- batches -------------------------------------------------------------------------------

    async def apply(self, items: Sequence[LogRecord]) -> Outcome:
        """Apply a batch; retries while the database is down; never raises for bad events."""
        return await self._retrying("batch", lambda conn: self._apply(conn, items))

    async def _apply(self, conn: psycopg.AsyncConnection, items: Sequence[LogRecord]) -> Outcome:
        now = self.clock()  # the instant this batch arrives, for every record in it
        try:
            out = await apply_batch(conn, items, self.fold, hooks=self._hooks(now),
                                    catalogue=self.catalogue, arrival=lambda _: now,
                                    ledger_key=self._ledger_key)
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the event that broke the batch
            if len(items) == 1:
                return await self._dead_letter(conn, items[0], exc)
            return _merged([await self._apply(conn, [item]) for item in items])
        for item, reason, _ in out.dead:
            log.warning("event dead-lettered", partition=item.partition, offset=item.offset,
                        reason=reason)
        return out

    async def _dead_letter(self, conn: psycopg.AsyncConnection, item: LogRecord,
                           exc: Exception) -> Outcome:
        reason = f"could not be applied ({type(exc).__name__})"
        log.warning("event dead-lettered", partition=item.partition, offset=item.offset,
                    reason=reason)
        return await apply_batch(conn, [item], self.fold, hooks=self._hooks(self.clock()),
                                 catalogue=self.catalogue, ledger_key=self._ledger_key,
                                 refuse=reason)

    def _hooks(self, now: datetime) -> list[Hook]:
        """The projections' hooks, then the chain: every new record chained and a checkpoint
        signed at ``now``, the batch's arrival (a rebuild dates the records by it)."""
        async def read_heads(cur: psycopg.AsyncCursor, items: Sequence[LogRecord],
                             records: object) -> bool:
            if not items:
                return False
            await send_latest_checkpoints(cur, items[0].topic, {i.partition for i in items})
            return True

        async def chain_records(cur: psycopg.AsyncCursor, out: Outcome, heads: Rows) -> None:
            # a record that did not decode is chained as its placeholder (as archived)
            forms = [placeholder(i) if (i.partition, i.offset) in out.poison else i
                     for i in out.items]
            checkpoints = await achain_batch(cur, forms, self._signing, now,
                                             heads=latest_from(heads))
            await outbox.add_checkpoints(cur, checkpoints)  # a copy outside PostgreSQL

        return [*self.hooks, ReadingHook(read_heads, chain_records)]

    # --- the timers' jobs ----------------------------------------------------------------------

    async def publish_pending(self, send: Callable[[list[outbox.Row]], Awaitable[None]]) -> None:
        """Publish the outbox (the ledger's own facts, the dead letters, checkpoints), then
        forget it: to the broker with ``send``, or, with the journal, into the journal in one
        transaction (durable there; the relay hands it to the broker)."""
        async def drain(conn: psycopg.AsyncConnection) -> None:
            if self._journal:
                while await outbox.into_journal(conn):
                    pass
                return
            while await outbox.drain_async(conn, send):
                pass

        async with self._outbox_lock:
            await self._once("outbox", drain)

    async def sweep(self) -> None:
        """Destroy what has fallen due and expire consents, as of the processors' clock."""
        async def run(conn: psycopg.AsyncConnection) -> None:
            events = await sweep(conn, self.policy, self.clock(), self._signing)
            if events:
                log.info("retention sweep", events=len(events))

        await self._once("sweep", run)

    async def retry_problems(self) -> None:
        """Try again the subjects whose erasure or sweep failed (recorded as problems)."""
        async def run(conn: psycopg.AsyncConnection) -> None:
            events = await retry_problems(conn, self.policy, self.clock(), self._signing)
            if events:
                log.info("problems retried", events=len(events))

        await self._once("sweep", run)


def _merged(outcomes: list[Outcome]) -> Outcome:
    merged = Outcome(views=(views := WrittenViews()))
    for one in outcomes:
        merged.applied += one.applied
        merged.dead += one.dead
        merged.duplicates += one.duplicates
        merged.already_applied += one.already_applied
        views.update(one.views)
        merged.items += one.items
        merged.poison |= one.poison
    return merged

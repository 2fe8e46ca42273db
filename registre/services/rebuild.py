"""`registre rebuild`: every projection rebuilt from the log, blue/green, at the log's pace.

1. **Bulk.** Every projection is built into the shadow schema ``projections_next`` (migration
   016) from the log's first record up to where the live processors stand: worker processes
   (one per core, at most one per partition) each fold whole partitions in memory and COPY the
   final rows once (`projections.bulk`); then the shadow gets the live tables' keys and
   indexes. The live processors keep applying meanwhile; readers read the live tables.
2. **Catch-up.** What the live processors applied since is applied to the shadow by the batch
   writer itself (``apply_batch(schema=projections_next)``, the projection hooks only: key
   destruction, the integrity chain and the archive were done live), until little is left.
3. **Swap.** One transaction takes the projection lock (the live batch writers wait), applies
   the last records the live processors added, drops from the shadow's lookup index whoever's
   contact key was destroyed meanwhile, and swaps the shadow tables in
   (`projections.rebuild_swap()`: tables move, grants, row-level security, policies and the
   analytics views follow). Processors and readers wait for that transaction only.

The rebuild stops exactly where the live processors stand, so every record it applies had its
live side effects (key destruction, chain, archive) and the processors resume after it. On a
database that never applied anything (a new database), it goes to the log's end. Each record is
dated as it was applied live: by the signing instant of the checkpoint that covers it.

Interrupted (Ctrl-C, SIGTERM) or failed, it drops the shadow and leaves the live projections
as they were. One rebuild at a time per database.

The worker processes come from multiprocessing's forkserver (preloaded with
`projections.bulk`): a script that calls `rebuild` needs the usual ``if __name__ ==
"__main__":`` guard, as the `registre` command and `python -m` modules have.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tqdm import tqdm

from events.catalogue import topic_name
from events.log import LogReader, LogRecord, LogTail
from processors.rules.fold import Fold
from processors.rules.policy import Policy
from projections import shadow
from projections.bulk import NEXT, BulkResult, BulkTask, fold_partition
from projections.integrity_store import arrivals
from projections.positions import applied_positions
from projections.writer import LIVE, PROJECTION_LOCK, Hook, apply_batch

SWAP_GAP = 200  # records left to the live position when the swap is attempted
CATCH_UP_ROUNDS = 50  # rounds of catch-up before the swap is attempted anyway
BATCH = 2000  # records per catch-up batch
LOCK_TIMEOUT = "3s"  # the longest the swap waits for a lock (then it tries again)
SWAP_ATTEMPTS = 30
LIVE_WAIT_SECONDS = 600.0  # how long to wait for live processors behind the shadow
KB_PER_SUBJECT = 20  # a bulk worker's memory per subject it folds (measured: 18 kB at 1M events)


@dataclass(frozen=True)
class Rebuild:
    """What a rebuild needs (the composition root builds it)."""

    bootstrap: str
    database_url: str
    policy: Policy
    master_key: bytes
    ledger_key: Ed25519PublicKey
    fold: Fold  # the live fold, for the catch-up (the workers build theirs from the policy)
    hooks: Sequence[Hook]  # the projection hooks, for the catch-up
    clock: Callable[[], datetime]
    workers: int | None = None  # worker processes; default one per core
    progress: bool = False  # a progress bar on stderr
    memory_mb: int = 2048  # what one worker process may hold: more subjects, more passes


@dataclass
class Report:
    records: int = 0  # records the rebuilt projections cover (their positions)
    mode: str = "live"  # "live": up to the live processors; "end": to the log's end
    workers: int = 0
    slices: int = 1  # passes over each partition, each folding a share of its subjects
    bulk_records: int = 0
    caught_up: int = 0  # records applied by the catch-up and the swap
    swap_ms: float = 0.0  # projection lock held, to commit
    swap_records: int = 0  # of which applied while holding the lock
    swap_steps_ms: dict[str, float] = field(default_factory=dict)  # the tables' steps, to commit
    lookup_forgotten: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    partitions: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"rebuilt": True, "records": self.records, "mode": self.mode,
                "workers": self.workers, "slices": self.slices, "caught_up": self.caught_up,
                "swap_ms": round(self.swap_ms, 1), "swap_records": self.swap_records,
                "swap_tables_ms": round(sum(self.swap_steps_ms.values()), 1),
                "swap_steps_ms": {k: round(v, 1) for k, v in self.swap_steps_ms.items()},
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}


class _LiveBehind(Exception):
    """The live processors stand behind the shadow in some partition: wait for them."""


def rebuild(job: Rebuild) -> Report:
    """Rebuild every projection blue/green (see the module's docstring); what it did."""
    with psycopg.connect(job.database_url, autocommit=True) as conn, _sigterm_interrupts():
        shadow.acquire(conn)
        try:
            return _rebuild(job, conn)
        except BaseException:
            with psycopg.connect(job.database_url, autocommit=True) as again:
                shadow.discard(again)  # the live projections were never touched
            raise


def _rebuild(job: Rebuild, conn: psycopg.Connection) -> Report:
    report, started = Report(), time.monotonic()
    with LogReader(job.bootstrap) as reader:
        ends = reader.end_offsets()
    live = applied_positions(conn)
    report.mode = "live" if live else "end"
    targets = {p: live.get(p, 0) for p in ends} if live else ends
    positions = {p: o for p, o in targets.items() if o > 0 or p in live}
    report.slices = _slices(conn, job, targets)
    shadow.prepare(conn)
    results = _bulk(job, targets, {}, report)
    try:
        _finish_shadow(job, conn, results, positions, report)
    except psycopg.errors.UniqueViolation:  # one event id in two partitions: the bulk again
        skip = _losers(conn, shadow.duplicated_ids(conn))
        shadow.prepare(conn)
        results = _bulk(job, targets, skip, report)
        _finish_shadow(job, conn, results, positions, report)
    report.partitions = [{"partition": r.partition, "slice": r.slice, "records": r.records,
                          "applied": r.applied,
                          "dead": r.dead, "cpu_seconds": round(r.cpu_seconds, 2),
                          "rss_mb": round(r.rss_mb), **{k: round(v, 2) for k, v in
                                                        r.seconds.items()}}
                         for r in sorted(results, key=lambda r: (r.partition, r.slice))]
    asyncio.run(_catch_up_and_swap(job, report))
    report.seconds["total"] = time.monotonic() - started
    return report


# --- bulk: worker processes, one partition at a time ---------------------------------------

_progress: Any = None  # the worker process's queue to the parent


def _init_worker(queue: Any) -> None:
    global _progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt does
    _progress = queue


def _work(task: BulkTask) -> BulkResult:
    return fold_partition(task, lambda _partition, n: _progress.put(n))


def _bulk(job: Rebuild, targets: dict[int, int], skip: dict[int, set[int]],
          report: Report) -> list[BulkResult]:
    now = job.clock()
    raw_key = job.ledger_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    tasks = [BulkTask(job.bootstrap, job.database_url, topic_name("ledger"), p, end,
                      job.master_key, raw_key, job.policy, now, frozenset(skip.get(p, ())),
                      report.slices, k)
             for p, end in sorted(targets.items(), key=lambda pe: -pe[1]) if end > 0
             for k in range(report.slices)]
    if not tasks:
        return []
    t0 = time.monotonic()
    report.workers = min(job.workers or os.cpu_count() or 1, len(tasks))
    report.bulk_records = total = sum(t.end for t in tasks) // report.slices
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["projections.bulk"])
    queue = ctx.Queue()
    with tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, desc="rebuild",
              disable=not job.progress, smoothing=0.1) as bar, \
            ctx.Pool(report.workers, initializer=_init_worker, initargs=(queue,)) as pool:
        pending = pool.map_async(_work, tasks, chunksize=1)
        while not pending.ready():
            pending.wait(0.2)
            bar.update(_drain(queue))
        results = pending.get()
        bar.update(_drain(queue))
    report.seconds["fold"] = time.monotonic() - t0
    return results


def _slices(conn: psycopg.Connection, job: Rebuild, targets: dict[int, int]) -> int:
    """Passes over each partition so that a worker holds at most ``job.memory_mb`` of views:
    the subjects per partition as the live view's statistics count them (else one per ten
    records), times what a subject costs a worker."""
    subjects = conn.execute("SELECT reltuples::bigint FROM pg_class"
                            " WHERE oid = 'projections.customer_view'::regclass").fetchone()[0]
    partitions = sum(1 for end in targets.values() if end > 0) or 1
    if subjects <= 0:
        subjects = sum(targets.values()) // 10
    per_worker_mb = subjects / partitions * KB_PER_SUBJECT / 1024
    return max(1, math.ceil(per_worker_mb / max(1, job.memory_mb)))


def _finish_shadow(job: Rebuild, conn: psycopg.Connection, results: list[BulkResult],
                   positions: dict[int, int], report: Report) -> None:
    """The analytics totals and the positions into the shadow, then its keys and indexes."""
    shadow.write_totals(conn, _totals(results))
    shadow.write_positions(conn, positions)
    t0 = time.monotonic()
    shadow.index(job.database_url, sessions=report.workers or 1)
    report.seconds["index"] = time.monotonic() - t0


def _drain(queue: Any) -> int:
    n = 0
    while not queue.empty():
        n += queue.get()
    return n


def _totals(results: list[BulkResult]) -> list[tuple[Any, ...]]:
    """The analytics totals: each partition's groups summed (their subjects are disjoint)."""
    totals: dict[tuple[Any, ...], list[int]] = {}
    for r in results:
        for group, counts in r.groups.items():
            t = totals.setdefault(group, [0, 0, 0])
            for i in range(3):
                t[i] += counts[i]
    return [(*g, *c) for g, c in sorted(totals.items())]


def _losers(conn: psycopg.Connection, dups: dict[str, list[tuple[int, int]]]
            ) -> dict[int, set[int]]:
    """For an event id found in several partitions, every place but the one the live
    processors applied (else the first): those records count as duplicates."""
    winners = shadow.live_winners(conn, sorted(dups))
    skip: dict[int, set[int]] = {}
    for event_id, where in dups.items():
        keep = winners.get(event_id) if winners.get(event_id) in where else min(where)
        for p, o in where:
            if (p, o) != keep:
                skip.setdefault(p, set()).add(o)
    return skip


# --- catch-up and swap ---------------------------------------------------------------------


async def _catch_up_and_swap(job: Rebuild, report: Report) -> None:
    t0 = time.monotonic()
    async with await psycopg.AsyncConnection.connect(job.database_url, autocommit=True) as conn, \
            LogTail(job.bootstrap) as tail:
        waited_since = None
        for _ in range(CATCH_UP_ROUNDS):
            live, mine = await shadow.positions(conn, LIVE), await shadow.positions(conn, NEXT)
            gap = _gap(live, mine)
            if live and any(o > live.get(p, 0) for p, o in mine.items()) and not gap:
                waited_since = waited_since or time.monotonic()
                if time.monotonic() - waited_since > LIVE_WAIT_SECONDS:
                    raise shadow.RebuildRefused("the live processors stay behind the rebuild")
                await asyncio.sleep(0.5)
                continue
            if sum(end - start for start, end in gap.values()) <= SWAP_GAP:
                break
            records = await tail.read({p: s for p, (s, _) in gap.items()},
                                      {p: e for p, (_, e) in gap.items()})
            report.caught_up += await _apply(job, conn, records)
        report.seconds["catch_up"] = time.monotonic() - t0
        await _swap(job, conn, tail, report)
        t0 = time.monotonic()
        await conn.execute("SELECT projections.rebuild_discard()")  # the replaced tables
        report.seconds["drop_old"] = time.monotonic() - t0


def _gap(live: dict[int, int], mine: dict[int, int]) -> dict[int, tuple[int, int]]:
    """(from, to) of each partition where the live processors are ahead of the shadow."""
    return {p: (mine.get(p, 0), o) for p, o in live.items() if o > mine.get(p, 0)}


async def _apply(job: Rebuild, conn: psycopg.AsyncConnection,
                 records: list[LogRecord]) -> int:
    """Apply records to the shadow as the live processors did (dated by their checkpoints)."""
    for i in range(0, len(records), BATCH):
        batch = records[i:i + BATCH]
        dated = await arrivals(conn, batch)
        await apply_batch(conn, batch, job.fold, hooks=job.hooks, archive=False,
                          ledger_key=job.ledger_key, schema=NEXT,
                          arrival=_dated_or(dated, job.clock()))
    return len(records)


def _dated_or(dated: dict[tuple[int, int], datetime], now: datetime
              ) -> Callable[[LogRecord], datetime]:
    return lambda r: dated.get((r.partition, r.offset), now)


async def _swap(job: Rebuild, conn: psycopg.AsyncConnection, tail: LogTail,
                report: Report) -> None:
    """The swap transaction, tried again while a lock is not granted in time."""
    for attempt in range(SWAP_ATTEMPTS):
        ahead = await _read_ahead(job, conn, tail, report)
        mine = await shadow.positions(conn, NEXT)
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                await shadow.keep_vacuum_away(conn)  # blocks nobody; waits out autovacuum
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECTION_LOCK,))
                locked = time.monotonic()
                live = await shadow.positions(conn, LIVE)
                if live:
                    report.swap_records = await _last_records(job, conn, tail, ahead, live, mine)
                report.records = sum((live or mine).values())
                tables = time.monotonic()
                report.lookup_forgotten = await shadow.forget_destroyed_contacts(conn)
                forgotten = time.monotonic()
                await shadow.swap_tables(conn)
                swapped = time.monotonic()
            done = time.monotonic()
            report.swap_ms = (done - locked) * 1000
            report.swap_steps_ms = {"forget_contacts": (forgotten - tables) * 1000,
                                    "swap_tables": (swapped - forgotten) * 1000,
                                    "commit": (done - swapped) * 1000}
            report.caught_up += report.swap_records
            return
        except (psycopg.errors.LockNotAvailable, _LiveBehind):
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
    raise shadow.RebuildRefused(f"the swap did not get its locks in {SWAP_ATTEMPTS} attempts"
                                " (long-running readers of the projections?)")


async def _read_ahead(job: Rebuild, conn: psycopg.AsyncConnection, tail: LogTail,
                      report: Report) -> list[LogRecord]:
    """Outside the lock: read the log from the shadow's positions to its end, and apply what
    the live processors have applied of it; the rest is what they may apply by the swap."""
    mine = await shadow.positions(conn, NEXT)
    ahead = await tail.read(mine, idle_ms=100)
    live = await shadow.positions(conn, LIVE)
    if live and not any(o > live.get(p, 0) for p, o in mine.items()):
        done = [r for r in ahead if r.offset < live.get(r.partition, 0)]
        report.caught_up += await _apply(job, conn, done)
        ahead = [r for r in ahead if r.offset >= live.get(r.partition, 0)]
    return ahead


async def _last_records(job: Rebuild, conn: psycopg.AsyncConnection, tail: LogTail,
                        ahead: list[LogRecord], live: dict[int, int],
                        mine: dict[int, int]) -> int:
    """Under the lock: bring the shadow exactly to the live positions."""
    if any(o > live.get(p, 0) for p, o in mine.items()):
        raise _LiveBehind
    gap = _gap(live, mine)
    records = [r for r in ahead if r.partition in gap
               and gap[r.partition][0] <= r.offset < gap[r.partition][1]]
    reached = {p: s for p, (s, _) in gap.items()}
    for r in records:
        reached[r.partition] = r.offset + 1
    rest = {p: (reached[p], end) for p, (_, end) in gap.items() if reached[p] < end}
    if rest:  # applied live after the read above
        records += await tail.read({p: s for p, (s, _) in rest.items()},
                                   {p: e for p, (_, e) in rest.items()})
    return await _apply(job, conn, sorted(records, key=lambda r: (r.partition, r.offset)))


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C (the shadow is dropped), in the main thread."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

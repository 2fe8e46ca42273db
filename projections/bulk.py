"""A rebuild's bulk pass over one partition: fold it in memory, write the final rows once.

`fold_partition` runs in a worker process of `registre rebuild` (one partition at a time,
several processes side by side: a subject's events are all in one partition, so partitions
are independent). It reads the partition's records from the log, decodes and folds them with
the very rules of the batch writer (`projections.writer.decode_item`, `fold_one`), computes
every projection's rows with the functions its live hook uses (`consent_history.rows`,
`requests.rows`, `erasure_store.erasure_rows`, `analytics.tally`, `lookup.entries`), and COPYs
them into the shadow tables (`projections.shadow`) in one transaction (binary COPY: the server
parses no text). Nothing of the live projections is read or written; the key store and the
checkpoints are only read, each key once per partition (`PartitionKeys`).

Each record is dated as the live processors dated it: the signing instant of the checkpoint
that covers it (`integrity_store.covering_instant`), else the rebuild's start.

The analytics totals are the one projection summed across partitions: the worker returns its
groups' counts (its distinct subjects are its own: a member is one subject's) and the parent
writes them.
"""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.types.json import Json

from events.catalogue import Catalogue, load_catalogue
from events.codec import Record
from events.keys import KeyRef
from events.keystore import unwrapped_keys_in
from events.log import LogRecord, read_partition
from processors.heap import BULK, tune_gc
from processors.rules.fold import ViewFold
from processors.rules.lookup import lookup_key
from processors.rules.policy import Policy
from projections import analytics, consent_history, lookup, requests
from projections.erasure_store import erasure_rows
from projections.integrity_store import apartition_checkpoints, covering_instant
from projections.jsonb import use_fast_json
from projections.writer import Outcome, decode_item, fold_one

log = structlog.get_logger("registre.rebuild")
NEXT = "projections_next"  # the shadow schema (migration 016)
CHUNK = 5000  # records decoded and folded between two key-store reads
# The columns each shadow table is written with (defaults fill the others).
COLUMNS: dict[str, tuple[str, ...]] = {
    "customer_view": ("subject_id", "status", "doc"),
    "applied_events": ("event_id", "partition", '"offset"'),
    "dead_letters": ("topic", "partition", '"offset"', "event_type", "reason"),
    "consent_history": ("subject_id", "purpose", "occurred_at", "status", "event_id",
                        "notice_version", "mechanism", "choice_event_id", "partition",
                        '"offset"'),
    "requests": ("subject_id", "request_id", "kind", "channel", "received_at", "deadline",
                 "extended_months", "completed_at", "outcome", "doc"),
    "erasure_requests": ("event_id", "subject_id", "occurred_at"),
    "erasures": ("subject_id", "event_id", "kind", "occurred_at", "body"),
    "analytics_members": ("measure", "period", "dim1", "dim2", "member"),
    "contact_lookup": ("subject_id", "kind", "digest"),
    "analytics_totals": ("measure", "period", "dim1", "dim2", "events", "granted", "subjects"),
}
# rows that never change once written: COPYed after each chunk (the others once, at the end)
APPEND_ONLY = ("applied_events", "dead_letters", "consent_history", "erasures",
               "erasure_requests")
UUID_OID = 2950
TEXT_COPY = ("requests",)  # its rows (those of the live hook) hold their instants as text
GroupKey = tuple[str, Any, str, str]  # analytics.Group as a plain tuple (pickles small)
Progress = Callable[[int, int], None]  # (partition, records just done)


@dataclass(frozen=True)
class BulkTask:
    """One partition's share of a rebuild: records ``0`` to ``end`` (excluded)."""

    bootstrap: str
    database_url: str
    topic: str
    partition: int
    end: int
    master_key: bytes
    ledger_key: bytes  # the ledger's Ed25519 public key, raw
    policy: Policy
    now: datetime  # the arrival of a record no checkpoint covers
    skip: frozenset[int] = frozenset()  # offsets counted as duplicates (an id seen elsewhere)
    slices: int = 1  # the partition's subjects split in this many passes (memory)...
    slice: int = 0  # ...and this task folds this one (records keyed `slice_of` it)


def slice_of(key: bytes | None, slices: int) -> int:
    """Which of ``slices`` passes over a partition folds the records of this key (subject):
    each pass holds only its own subjects' views in memory."""
    return zlib.crc32(key or b"") % slices


@dataclass
class BulkResult:
    partition: int
    slice: int = 0
    records: int = 0
    applied: int = 0
    dead: int = 0
    duplicates: int = 0
    groups: dict[GroupKey, list[int]] = field(default_factory=dict)  # events, granted, subjects
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per phase
    cpu_seconds: float = 0.0
    rss_mb: float = 0.0


class PartitionFold:
    """The state of one partition's fold and the rows it adds up to."""

    def __init__(self, task: BulkTask, fold: Callable[..., dict[str, Any]],
                 catalogue: Catalogue, arrivals: tuple[list[int], list[datetime]]) -> None:
        self.task = task
        self.fold = fold
        self.catalogue = catalogue
        self.ledger_key = Ed25519PublicKey.from_public_bytes(task.ledger_key)
        self.arrivals = arrivals
        self.views: dict[str, dict[str, Any]] = {}
        self.seen: set[str] = set()
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in APPEND_ONLY}
        self.requests: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.counts: dict[analytics.Group, list[int]] = {}
        self.members: set[tuple[analytics.Group, str]] = set()
        self.contacts: dict[tuple[str, str], str | None] = {}
        self.duplicates = 0

    def arrival(self, offset: int) -> datetime:
        return covering_instant(*self.arrivals, offset) or self.task.now

    def chunk(self, items: list[LogRecord]) -> Outcome:
        """Decode and fold ``items`` (in offset order) as the batch writer would."""
        out = Outcome(items=items, views=self.views)
        for item in items:
            record, refusal = decode_item(item, self.catalogue, self.ledger_key)
            if refusal is None and (record.event_id in self.seen
                                    or item.offset in self.task.skip):
                self.duplicates += 1
                continue
            if refusal is None:
                view, reason = fold_one(self.fold, self.views.get(record.subject_id), record,
                                        self.arrival(item.offset))
                if view is not None:
                    self.views[record.subject_id] = view
                    self.seen.add(record.event_id)
                    out.applied.append((item, record))
                    continue
                refusal = (reason, record.type)
            out.dead.append((item, *refusal))
        return out

    def add_rows(self, out: Outcome, keys: dict[tuple[KeyRef, int], bytes],
                 fields: dict[tuple[str, str], Any]) -> None:
        """The rows the live hooks would write for this chunk (their own functions), with the
        location and contact keys that exist (`PartitionKeys`)."""
        rows, part = self.rows, self.task.partition
        rows["applied_events"] += [(r.event_id, part, i.offset) for i, r in out.applied]
        rows["dead_letters"] += [(i.topic, part, i.offset, t, reason[:500])
                                 for i, reason, t in out.dead]
        rows["consent_history"] += consent_history.rows(out)
        rows["erasures"] += erasure_rows(out)
        chunk_requests, erasures = requests.rows(out)
        self.requests.update({(r[0], r[1]): r for r in chunk_requests})
        rows["erasure_requests"] += erasures
        records = [r for _, r in out.applied]
        counts, members = analytics.tally(records, keys, self.catalogue)
        for group, (events, granted) in counts.items():
            c = self.counts.setdefault(group, [0, 0])
            c[0] += events
            c[1] += granted
        self.members |= members
        sources = [r for r in records if r.type in lookup.SOURCES]
        self.contacts.update(lookup.entries(sources,
                                            lookup.opened_values(sources, keys, fields)))

    def take_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """The append-only rows of the chunks so far (and forget them)."""
        rows, self.rows = self.rows, {t: [] for t in APPEND_ONLY}
        return rows

    def final_rows(self, master_key: bytes) -> dict[str, list[tuple[Any, ...]]]:
        """The rows of the final state: views, requests, members, lookup entries."""
        return {
            "customer_view": [(s, v["status"], Json(v)) for s, v in self.views.items()],
            "requests": list(self.requests.values()),
            "analytics_members": [(g.measure, g.period, g.dim1, g.dim2, m)
                                  for g, m in self.members],
            "contact_lookup": lookup.digest_rows(lookup_key(master_key), self.contacts)}

    def groups(self) -> dict[GroupKey, list[int]]:
        subjects: dict[analytics.Group, int] = {}
        for group, _ in self.members:
            subjects[group] = subjects.get(group, 0) + 1
        return {(g.measure, g.period, g.dim1, g.dim2): [c[0], c[1], subjects.get(g, 0)]
                for g, c in self.counts.items()}


class _UuidFromText(Dumper):
    """A uuid column written in binary COPY from the canonical text registre keeps ids in."""

    format = pq.Format.BINARY
    oid = UUID_OID

    def dump(self, obj: str) -> bytes:
        return bytes.fromhex(obj.replace("-", ""))


async def column_types(conn: psycopg.AsyncConnection, schema: str = NEXT
                       ) -> dict[str, list[int]]:
    """Each rebuilt table's column types (oids, in the order of ``COLUMNS``), for binary COPY:
    the server then parses no text (timestamps, uuids, integers)."""
    conn.adapters.register_dumper(None, _UuidFromText)
    cur = await conn.execute(
        "SELECT c.relname, a.attname, a.atttypid::int FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped", (schema,))
    found = {(t, col): oid for t, col, oid in await cur.fetchall()}
    return {t: [found[(t, c.strip('"'))] for c in cols] for t, cols in COLUMNS.items()
            if t not in TEXT_COPY}


async def copy_rows(cur: psycopg.AsyncCursor, table: str, rows: Iterable[tuple[Any, ...]],
                    schema: str = NEXT, types: list[int] | None = None) -> None:
    """COPY ``rows`` (in the order of ``COLUMNS[table]``) into ``schema.table``; in binary when
    the column ``types`` are given (`column_types`)."""
    binary = " (FORMAT BINARY)" if types else ""
    async with cur.copy(f"COPY {schema}.{table} ({', '.join(COLUMNS[table])}) FROM STDIN"
                        f"{binary}") as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            await copy.write_row(row)


async def _write(conn: psycopg.AsyncConnection, rows: dict[str, list[tuple[Any, ...]]],
                 types: dict[str, list[int]]) -> None:
    async with conn.transaction(), conn.cursor() as cur:
        for table, table_rows in rows.items():
            if table_rows:
                await copy_rows(cur, table, table_rows, types=types.get(table))


class PartitionKeys:
    """The location and contact keys of a partition's records, each read and unwrapped once:
    a subject's events are spread over many chunks, and its keys would be read for each."""

    def __init__(self, master: bytes) -> None:
        self.master = master
        self.keys: dict[tuple[KeyRef, int], bytes] = {}
        self.read: set[KeyRef] = set()

    async def of(self, cur: psycopg.AsyncCursor, records: list[Record]
                 ) -> dict[tuple[KeyRef, int], bytes]:
        """The keys (location and contact) ``records`` need, among those read so far."""
        refs = (analytics.location_refs(records) | lookup.contact_refs(records)) - self.read
        if refs:
            keys, failed = await unwrapped_keys_in(cur, self.master, refs)
            if failed:  # as the live hooks: country unknown, contact not in the lookup
                log.warning("keys do not unwrap; their connections count as country unknown"
                            " and their contacts are left out of the lookup", keys=failed)
            self.keys.update(keys)
            self.read |= refs
        return self.keys


async def _fold_partition(task: BulkTask, progress: Progress | None) -> BulkResult:
    result = BulkResult(task.partition, task.slice)
    keep = None if task.slices == 1 else (
        lambda key: slice_of(key, task.slices) == task.slice)
    clock = {"read": 0.0, "decode+fold": 0.0, "keys+rows": 0.0, "copy": 0.0}
    catalogue = load_catalogue()
    fields = lookup.contact_fields(catalogue)
    async with await psycopg.AsyncConnection.connect(task.database_url,
                                                     autocommit=True) as conn:
        # the shadow is thrown away if anything fails: no need to wait for each flush to disk
        await conn.execute("SET synchronous_commit = off")
        types = await column_types(conn)
        keys = PartitionKeys(task.master_key)
        state = PartitionFold(task, ViewFold(task.policy, catalogue), catalogue,
                              await apartition_checkpoints(conn, task.topic, task.partition))
        t0 = time.perf_counter()
        async for items in read_partition(task.bootstrap, task.partition, 0, task.end,
                                          task.topic, CHUNK, keep):
            t1 = time.perf_counter()
            out = state.chunk(items)
            t2 = time.perf_counter()
            async with conn.cursor() as cur:
                known = await keys.of(cur, [r for _, r in out.applied])
            state.add_rows(out, known, fields)
            t3 = time.perf_counter()
            await _write(conn, state.take_rows(), types)
            t4 = time.perf_counter()
            clock["read"] += t1 - t0
            clock["decode+fold"] += t2 - t1
            clock["keys+rows"] += t3 - t2
            clock["copy"] += t4 - t3
            t0 = t4
            result.records += len(items)
            result.applied += len(out.applied)
            result.dead += len(out.dead)
            if progress is not None:
                progress(task.partition, len(items))
        t0 = time.perf_counter()
        await _write(conn, state.final_rows(task.master_key), types)
        clock["copy"] += time.perf_counter() - t0
    result.duplicates = state.duplicates
    result.groups = state.groups()
    result.seconds = clock
    return result


def fold_partition(task: BulkTask, progress: Progress | None = None) -> BulkResult:
    """Fold one partition into the shadow tables (in a worker process); what it did."""
    use_fast_json()
    tune_gc(BULK)  # the fold builds a large heap of small dicts and no cycles
    cpu = time.process_time()
    result = asyncio.run(_fold_partition(task, progress))
    result.cpu_seconds = time.process_time() - cpu
    result.rss_mb = _rss_mb()
    return result


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0

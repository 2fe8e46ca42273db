"""Apply a batch of ledger records to the projections in ONE PostgreSQL transaction.

The rows, the archive of the records, the dead letters and the next offset of each partition
are written together, so a crash anywhere leaves either all of a batch or none of it. An
offset below the stored position, or an event id already applied, changes nothing.

The same code writes into the shadow schema of a blue/green rebuild (``schema=``): every
statement of the batch and of its hooks then names ``<schema>.<table>`` instead of
``projections.<table>`` (`SchemaCursor`), and the live processors are not locked out.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

import orjson
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg.types.json import Json

from events.catalogue import Catalogue, load_catalogue
from events.codec import DecodeError, Record, decode
from events.log import LogRecord
from processors.rules.integrity import ledger_event_signed
from projections import outbox

# Batch writers take it shared (workers of other partitions write side by side), the swap of
# `registre rebuild` exclusive: no batch is half applied on either side of a swap.
PROJECTION_LOCK = 7_146_240_002
LIVE = "projections"  # the schema of the projections readers read
VIEW_CHUNK = 250  # views upserted by one statement, sent while the fold goes on
Fold = Callable[[dict[str, Any] | None, Record, datetime | None], dict[str, Any]]
Arrival = Callable[[LogRecord], datetime | None]  # when the ledger first applied a record


Incoming = LogRecord  # one record as read from the log (by a Faust agent or a LogReader)


class WrittenViews(Mapping[str, dict[str, Any]]):
    """The views a batch changed, kept as the JSON documents it writes, and read back (parsed
    anew) by a hook that asks for one (data-subject requests, erasure: a few per batch).

    Why not the dicts: a view is dumped as soon as its subject's last event of the batch is
    folded, and its objects are freed at once, so the next view reuses their memory while it
    is still in the CPU's caches. Kept alive to the batch's end, 2,000 views of ~100 objects
    each are cold again when they are dumped and freed. Measured on `apply_batch` alone (40k
    realistic events in batches of 2,000, nine interleaved pairs of runs): the client's CPU per
    event, median 80 -> 66 us; PostgreSQL's unchanged."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        self.statuses: dict[str, str] = {}
        self.sent = 0  # the first ``sent`` docs are written (`_write_views`)

    def add(self, subject_id: str, view: dict[str, Any]) -> None:
        self.docs[subject_id] = orjson.dumps(view)
        self.statuses[subject_id] = view["status"]

    def update(self, other: Mapping[str, dict[str, Any]]) -> None:
        """Add another batch's views (those of ``other`` win)."""
        if isinstance(other, WrittenViews):
            self.docs.update(other.docs)
            self.statuses.update(other.statuses)
        else:
            for subject_id, view in other.items():
                self.add(subject_id, view)

    def __getitem__(self, subject_id: str) -> dict[str, Any]:
        return orjson.loads(self.docs[subject_id])

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self.docs

    def __iter__(self) -> Iterator[str]:
        return iter(self.docs)

    def __len__(self) -> int:
        return len(self.docs)


@dataclass
class Outcome:
    applied: list[tuple[Incoming, Record]] = field(default_factory=list)
    dead: list[tuple[Incoming, str, str | None]] = field(default_factory=list)  # reason, type
    duplicates: int = 0
    already_applied: int = 0
    # the views the batch changed, after it (a rebuild's bulk pass: its dicts)
    views: Mapping[str, dict[str, Any]] = field(default_factory=WrittenViews)
    items: list[Incoming] = field(default_factory=list)  # every record not applied before
    poison: set[tuple[int, int]] = field(default_factory=set)  # (partition, offset): no event


Hook = Callable[[psycopg.AsyncCursor, Outcome], Awaitable[None]]
Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class ReadingHook:
    """A hook that reads what the batch's own writes do not change (data keys, chain heads).

    ``read(cursor, items, records)`` sends that one query on a cursor of its own (False:
    nothing to ask, nothing sent); ``write(cursor, outcome, rows)`` does the rest with its
    rows. `apply_batch` sends every hook's read with its own reads, before the fold, and waits
    once for them all: in pipeline mode a read waits for every statement sent before it, and
    sent after the fold it would wait for PostgreSQL to write the batch's views. ``records``
    are all the batch decoded, a superset of what it applies; ``items`` its fresh records."""

    read: Callable[[Any, Sequence[Incoming], list[Record]], Awaitable[bool]]
    write: Callable[[Any, Outcome, Rows], Awaitable[None]]

    async def __call__(self, cur: psycopg.AsyncCursor, out: Outcome) -> None:
        """Run on its own (no read ahead): read for what ``out`` applied, then write."""
        sent = await self.read(cur, out.items, [r for _, r in out.applied])
        await self.write(cur, out, await cur.fetchall() if sent else [])


_LIVE_TABLE = re.compile(r"\bprojections\.")


class SchemaCursor:
    """A cursor whose statements name ``<schema>.<table>`` where they say
    ``projections.<table>``: the batch writer and its hooks, unchanged, write a rebuild's
    shadow tables. A table the shadow does not have fails the statement (never the live one)."""

    def __init__(self, cursor: psycopg.AsyncCursor, schema: str) -> None:
        self._cursor = cursor
        self._prefix = schema + "."

    def _sql(self, query: Any) -> Any:
        return _LIVE_TABLE.sub(self._prefix, query) if isinstance(query, str) else query

    async def execute(self, query: Any, params: Any = None, **kw: Any) -> SchemaCursor:
        await self._cursor.execute(self._sql(query), params, **kw)
        return self

    async def executemany(self, query: Any, params_seq: Any, **kw: Any) -> None:
        await self._cursor.executemany(self._sql(query), params_seq, **kw)

    def copy(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return self._cursor.copy(self._sql(statement), params, **kw)

    def __getattr__(self, name: str) -> Any:  # fetchall, rowcount, connection...
        return getattr(self._cursor, name)


async def _positions(cur: psycopg.AsyncCursor, consumer: str, topic: str,
                     partitions: list[int]) -> dict[int, int]:
    """The stored positions of the batch's partitions, locked (another worker's partitions
    are none of this batch's business)."""
    await cur.execute(
        "SELECT partition, next_offset FROM projections.offsets"
        " WHERE consumer = %s AND topic = %s AND partition = ANY(%s) FOR UPDATE",
        (consumer, topic, partitions),
    )
    return {p: o for p, o in await cur.fetchall()}


async def apply_batch(
    conn: psycopg.AsyncConnection,
    items: Sequence[Incoming],
    fold: Fold,
    consumer: str = "ledger",
    hooks: Sequence[Hook] = (),
    archive: bool = True,
    catalogue: Catalogue | None = None,
    arrival: Arrival | None = None,
    ledger_key: Ed25519PublicKey | None = None,
    schema: str = LIVE,
    refuse: str | None = None,
) -> Outcome:
    """Decode, fold and persist ``items`` (one topic, any partitions) in one transaction.

    ``arrival`` gives the instant the ledger applies (or first applied) each record: the fold
    dates the facts retention counts from no later than that. With ``ledger_key``, a ledger fact
    (an event type of origin ``registre``) without a valid signature of it is a dead letter.
    With another ``schema`` (a rebuild's shadow), the batch writes there and takes no lock.
    With ``refuse``, every record is a dead letter for that reason and none is folded: no
    view is read (an event that made its batch fail on its own, whatever part of it did).

    The steps: skip what the stored positions say is applied; decode (what does not decode
    is a dead letter); archive the records; drop event ids applied before; fold each
    subject's view; write views, applied ids, dead letters, the hooks' projections and the
    new positions. From the fold on the connection is in pipeline mode: a statement is sent
    without waiting for the one before, so PostgreSQL writes views while the fold goes on
    (`VIEW_CHUNK`) and runs a statement while the next is built; a read waits for all sent
    before it (so a `ReadingHook`'s goes first). The first error is raised as without the
    pipeline, and the transaction rolls back."""
    out = Outcome(views=(views := WrittenViews()))
    if not items:
        return out
    topic = items[0].topic
    async with conn.transaction(), conn.cursor() as live_cursor:
        cur: Any = live_cursor
        if schema == LIVE:
            await cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (PROJECTION_LOCK,))
        else:
            cur = SchemaCursor(live_cursor, schema)
        positions = await _positions(cur, consumer, topic, sorted({i.partition for i in items}))
        out.items = [i for i in items if i.offset >= positions.get(i.partition, 0)]
        out.already_applied = len(items) - len(out.items)
        if not out.items:
            return out
        decoded, out.poison = _decode(out, catalogue or load_catalogue(), ledger_key)
        if archive:  # first: COPY cannot run in the pipeline below
            await _archive(cur, out.items, out.poison)
        async with conn.pipeline():  # each write is sent while the next one is built
            reads: dict[int, Any] = {}
            if refuse is None:  # the fold's first read waits for the hooks' reads too
                reads = await _send_reads(conn, schema, hooks, out.items, decoded)
                await _fold(cur, out, views, decoded, fold, arrival)
            else:
                out.dead += [(item, refuse, record.type) for item, record in decoded]
            await _persist(cur, out, views, decoded, archive)
            await _run_hooks(cur, out, hooks, reads)
            await _advance(cur, consumer, topic, out.items)
    return out


async def _run_hooks(cur: Any, out: Outcome, hooks: Sequence[Hook], reads: dict[int, Any]
                     ) -> None:
    """Each hook in turn; a `ReadingHook` whose read went ahead gets its rows."""
    for hook in hooks:
        if isinstance(hook, ReadingHook) and id(hook) in reads:
            await hook.write(cur, out, await _rows(reads[id(hook)]))
        else:
            await hook(cur, out)


async def _send_reads(conn: psycopg.AsyncConnection, schema: str, hooks: Sequence[Hook],
                      items: Sequence[Incoming], decoded: list[tuple[Incoming, Record]]
                      ) -> dict[int, Any]:
    """Send the reads of the `ReadingHook` hooks, each on a cursor of its own: per hook (by
    id), its cursor, or None when it had nothing to ask."""
    records = [r for _, r in decoded]
    reads: dict[int, Any] = {}
    for hook in hooks:
        if isinstance(hook, ReadingHook):
            reader: Any = conn.cursor()
            if schema != LIVE:
                reader = SchemaCursor(reader, schema)
            if await hook.read(reader, items, records):
                reads[id(hook)] = reader
            else:  # nothing to ask
                reads[id(hook)] = None
                await reader.close()
    return reads


async def _rows(reader: Any) -> Rows:
    """The rows a hook's read sent ahead (already here: the fold's first read waited for
    them)."""
    if reader is None:
        return []
    rows = await reader.fetchall()
    await reader.close()
    return rows


def _decode(out: Outcome, catalogue: Catalogue, ledger_key: Ed25519PublicKey | None
            ) -> tuple[list[tuple[Incoming, Record]], set[tuple[int, int]]]:
    """Decode the fresh items; the undecodable, the mis-keyed and the ledger facts the ledger
    did not sign become dead letters."""
    decoded: list[tuple[Incoming, Record]] = []
    poison: set[tuple[int, int]] = set()
    for item in out.items:
        record, refusal = decode_item(item, catalogue, ledger_key)
        if refusal is not None:
            out.dead.append((item, *refusal))
            if record is None:
                poison.add((item.partition, item.offset))
        else:
            decoded.append((item, record))
    return decoded, poison


def decode_item(item: Incoming, catalogue: Catalogue, ledger_key: Ed25519PublicKey | None
                ) -> tuple[Record | None, tuple[str, str | None] | None]:
    """(record, None) for a record to fold; else (record or None if it does not decode,
    (reason, event type)) for a dead letter. One rule for the batch writer and the rebuild."""
    try:
        record = decode(item.value or b"", catalogue)
    except DecodeError as exc:
        return None, (str(exc), None)
    if item.key != record.subject_id.encode():
        return record, ("Kafka key does not match subject_id", record.type)
    if "\x00" in record.subject_id or _holds_nul(record.data):  # a publisher that skipped
        # validation (events.validation): the database would refuse the batch over it
        return record, ("subject_id or data: a text holds a NUL character (U+0000), which no"
                        " text column stores", record.type)
    if ledger_key is not None and catalogue.types[record.type].origin == "registre" and \
            not ledger_event_signed(ledger_key, item.key, item.value, item.headers):
        return record, (f"{record.type} is a ledger fact without the ledger's signature: only"
                        " registre appends its own facts", record.type)
    return record, None


def _holds_nul(value: Any) -> bool:
    """Whether a text anywhere in ``value`` (an event's data) holds U+0000. Run on every
    record: the leaves are tested in the loop, and only branches recurse."""
    kind = type(value)
    if kind is str:
        return "\x00" in value
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return False
    for v in value:
        kind = type(v)
        if kind is str:
            if "\x00" in v:
                return True
        elif (kind is dict or kind is list) and _holds_nul(v):
            return True
    return False


def fold_one(fold: Fold, view: dict[str, Any] | None, record: Record,
             arrived_at: datetime | None) -> tuple[dict[str, Any] | None, str | None]:
    """(view after the record, None), or (None, why the fold refused it)."""
    try:
        return fold(view, record, arrived_at), None
    except Exception as exc:  # noqa: BLE001 - any fold failure is this event's fault
        return None, str(exc) or type(exc).__name__


async def _fold(cur: psycopg.AsyncCursor, out: Outcome, written: WrittenViews,
                decoded: list[tuple[Incoming, Record]], fold: Fold,
                arrival: Arrival | None) -> None:
    """Fold every new event into its subject's view (locked for the transaction). A view is
    parsed when its subject's first event is folded and written out (`WrittenViews`) once its
    last one is: no view stays parsed in memory for the rest of the batch."""
    await cur.execute(
        "SELECT event_id::text FROM projections.applied_events"
        " WHERE event_id = ANY(%s::uuid[])", (array_literal([r.event_id for _, r in decoded]),))
    seen = {row[0] for row in await cur.fetchall()}
    await cur.execute(
        "SELECT subject_id, doc::text FROM projections.customer_view WHERE subject_id = ANY(%b)"
        " FOR UPDATE", (sorted({r.subject_id for _, r in decoded}),))
    stored: dict[str, str] = dict(await cur.fetchall())  # as stored: JSON text
    last = {r.subject_id: n for n, (_, r) in enumerate(decoded)}
    changed: dict[str, dict[str, Any]] = {}  # views this batch changed, not yet written out
    for n, (item, record) in enumerate(decoded):
        subject = record.subject_id
        if record.event_id in seen:
            out.duplicates += 1
        else:
            view = changed.get(subject)
            if view is None and subject in stored:
                view = orjson.loads(stored[subject])
            after, refusal = fold_one(fold, view, record,
                                      arrival(item) if arrival is not None else None)
            if after is None:
                out.dead.append((item, refusal, record.type))
            else:
                changed[subject] = after
                seen.add(record.event_id)
                out.applied.append((item, record))
        if last[subject] == n and subject in changed:
            written.add(subject, changed.pop(subject))
            if len(written.docs) - written.sent >= VIEW_CHUNK:  # PostgreSQL writes these
                await _write_views(cur, written)  # while the fold goes on


async def _persist(cur: psycopg.AsyncCursor, out: Outcome, views: WrittenViews,
                   decoded: list[tuple[Incoming, Record]], live: bool) -> None:
    """Write the views, the applied ids and the dead letters."""
    await _write_views(cur, views)
    if out.applied:
        await cur.execute(
            "INSERT INTO projections.applied_events (event_id, partition, \"offset\")"
            " SELECT * FROM unnest(%s::uuid[], %s::int[], %s::bigint[])",
            (array_literal([r.event_id for _, r in out.applied]),
             array_literal([i.partition for i, _ in out.applied]),
             array_literal([i.offset for i, _ in out.applied])))
    if out.dead:
        await _dead_letters(cur, out, decoded, live)


async def _write_views(cur: psycopg.AsyncCursor, views: WrittenViews) -> None:
    """Upsert the views not sent yet: one statement, the docs as ONE JSON array (psycopg
    dumps a json[] element by element, ~2.5 us more per view), zipped with the ids by
    ROWS FROM."""
    subjects = list(islice(views.docs, views.sent, None))
    if not subjects:
        return
    views.sent += len(subjects)
    await cur.execute(
        "INSERT INTO projections.customer_view (subject_id, status, doc, updated_at)"
        " SELECT s, st, d, now() FROM ROWS FROM (unnest(%b::text[]), unnest(%b::text[]),"
        " json_array_elements(%b::json)) AS v(s, st, d) ON CONFLICT (subject_id) DO UPDATE"
        " SET status = EXCLUDED.status, doc = EXCLUDED.doc, updated_at = now()",
        (subjects, [views.statuses[s] for s in subjects],
         Json([views.docs[s] for s in subjects], dumps=_json_array)))


def array_literal(values: Iterable[int | str | None]) -> str:
    """A PostgreSQL array literal of values that need no quoting (integers, uuids in their
    canonical form, None): one ``join`` where psycopg dumps a list element by element in
    Python (~0.25 us each; several elements per event). Sent as ``%s::<type>[]``."""
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _json_array(docs: Any) -> bytes:
    """JSON documents, already dumped, as one JSON array."""
    return b"[" + b",".join(docs) + b"]"


async def _dead_letters(cur: psycopg.AsyncCursor, out: Outcome,
                        decoded: list[tuple[Incoming, Record]], live: bool) -> None:
    await cur.executemany(
        "INSERT INTO projections.dead_letters (topic, partition, \"offset\", event_type,"
        " reason) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        [(i.topic, i.partition, i.offset, t, reason[:500]) for i, reason, t in out.dead])
    if live:  # live processing: the dead-letter topic gets them via the outbox
        subjects = {(i.partition, i.offset): r.subject_id for i, r in decoded}
        await cur.executemany(outbox.INSERT_SQL, [
            outbox.dead_letter_row(i.topic, i.partition, i.offset, reason, t,
                                   subjects.get((i.partition, i.offset)))
            for i, reason, t in out.dead])


async def _advance(cur: psycopg.AsyncCursor, consumer: str, topic: str,
                   items: Sequence[Incoming]) -> None:
    """Store the next offset of each partition the batch reached."""
    ends: dict[int, int] = {}
    for item in items:
        ends[item.partition] = max(ends.get(item.partition, 0), item.offset + 1)
    await cur.executemany(
        "INSERT INTO projections.offsets (consumer, topic, partition, next_offset)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (consumer, topic, partition)"
        " DO UPDATE SET next_offset = GREATEST(projections.offsets.next_offset,"
        " EXCLUDED.next_offset)",
        [(consumer, topic, p, o) for p, o in ends.items()])


async def _archive(
    cur: psycopg.AsyncCursor, items: Sequence[Incoming], poison: set[tuple[int, int]]
) -> None:
    async with cur.copy(  # binary: the values go as they are, not as hex text
        "COPY projections.archive (topic, partition, \"offset\", key, headers, value, poison,"
        " timestamp_ms) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "int4", "int8", "bytea", "jsonb", "bytea", "bool", "int8"])
        for i in items:
            if (i.partition, i.offset) in poison:  # keep the position, not the bytes
                await copy.write_row((i.topic, i.partition, i.offset, None, [], None, True,
                                      i.timestamp_ms))
                continue
            headers = [[k, base64.b64encode(v or b"").decode()] for k, v in i.headers]
            await copy.write_row((i.topic, i.partition, i.offset, i.key, headers, i.value, False,
                                  i.timestamp_ms))

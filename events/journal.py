"""The journal: where an acknowledgement becomes durable before the broker has the record.

On the embedded default the broker keeps its log in memory, so "the broker acknowledged" is
not durable. There the publisher commits the sealed records to ``journal.records`` (one COPY
per batch, in one transaction) and only then answers; the relay of `registre run`
(`registre.relay`) hands them to the broker in order, notes where each landed, forgets a
ledger record once the processors have applied its position, and after a broker restart hands
again whatever the broker lost. The processors drop a repeated event id, so a record handed
twice is applied once. Schema: ``projections/migrations/018_journal.sql``.
"""

from __future__ import annotations

import base64
from binascii import a2b_base64
from collections.abc import Iterable, Sequence

import orjson
import psycopg
from psycopg.types.json import Jsonb

Row = tuple[str | None, str, bytes | None, bytes, list[tuple[str, bytes]]]
"""One record to hand on: (event id, topic, key, value, headers)."""
Claimed = tuple[int, str, bytes | None, bytes, list[tuple[str, bytes]]]

NOT_ACCEPTING = "registre does not accept events now"


class JournalClosed(Exception):
    """`registre run` is starting or stopping: nothing is acknowledged (publish again)."""


def _headers(pairs: Iterable[tuple[str, bytes]]) -> Jsonb:
    return Jsonb([[k, base64.b64encode(v).decode()] for k, v in pairs])


class Journal:
    """The publisher's side: append a batch, durably, or refuse it whole."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    @classmethod
    def connect(cls, database_url: str, timeout: float) -> Journal:
        return cls(psycopg.connect(database_url, autocommit=True,
                                   connect_timeout=max(1, int(timeout))))

    def close(self) -> None:
        self._conn.close()

    def append(self, rows: Sequence[Row]) -> None:
        """Commit every row or none; JournalClosed when events are not accepted now."""
        with self._conn.transaction(), self._conn.cursor() as cur:
            gate = cur.execute("SELECT open, reason FROM journal.gate WHERE id = 1"
                               " FOR SHARE").fetchone()
            if gate is None or not gate[0]:
                reason = gate[1] if gate and gate[1] else "not started"
                raise JournalClosed(f"{NOT_ACCEPTING} ({reason}); publish again once it runs")
            with cur.copy("COPY journal.records (event_id, topic, key, value, headers)"
                          " FROM STDIN") as copy:
                for event_id, topic, key, value, headers in rows:
                    copy.write_row((event_id, topic, key, value, _headers(headers)))
            cur.execute("NOTIFY journal")


# --- the relay's side (a processor login) -----------------------------------------------------


def claim(conn: psycopg.Connection, limit: int) -> list[Claimed]:
    """The next records not handed on yet, in the order they were accepted.

    The headers come as JSON text, parsed with orjson and decoded with binascii: the relay is
    bound by its own CPU per record, and json + base64.b64decode were ~8 us of it."""
    rows = conn.execute(
        'SELECT id, topic, key, value, headers::text FROM journal.records'
        ' WHERE "offset" IS NULL ORDER BY id LIMIT %s', (limit,)).fetchall()
    return [(i, t, bytes(k) if k is not None else None, bytes(v),
             [(h, a2b_base64(b)) for h, b in orjson.loads(headers)])
            for i, t, k, v, headers in rows]


def mark_relayed(conn: psycopg.Connection, placed: Sequence[tuple[int, int, int]]) -> None:
    """Note where each record landed: (id, partition, offset)."""
    if placed:
        conn.execute(
            'UPDATE journal.records j SET "partition" = p.part, "offset" = p.off'
            " FROM unnest(%s::bigint[], %s::int[], %s::bigint[]) AS p(id, part, off)"
            " WHERE j.id = p.id",
            ([i for i, _, _ in placed], [p for _, p, _ in placed], [o for _, _, o in placed]))


def forget_done(conn: psycopg.Connection, ledger_topic: str) -> int:
    """Forget what needs the journal no more: a ledger record once the processors' position
    is past it (applied, or dead-lettered, or a repeat), any other record once relayed."""
    return conn.execute(
        'DELETE FROM journal.records j WHERE j."offset" IS NOT NULL AND (j.topic <> %s OR'
        " EXISTS (SELECT 1 FROM projections.offsets o WHERE o.consumer = 'ledger'"
        ' AND o.topic = j.topic AND o.partition = j."partition"'
        ' AND o.next_offset > j."offset"))', (ledger_topic,)).rowcount


# A ledger record relayed to a position the broker no longer holds (it restarted empty and
# got only the archive back); parameters: the ledger topic, then `_ends_params`.
_LOST = ('j.topic = %s AND EXISTS (SELECT 1 FROM unnest(%s::int[], %s::bigint[])'
         ' AS e(part, log_end) WHERE e.part = j."partition" AND j."offset" >= e.log_end)')


def _ends_params(ends: dict[int, int]) -> tuple[list[int], list[int]]:
    return list(ends), [ends[p] for p in ends]


def reset_lost(conn: psycopg.Connection, ledger_topic: str, ends: dict[int, int]) -> int:
    """Records relayed to positions the broker no longer holds: hand them again."""
    return conn.execute(
        f'UPDATE journal.records j SET "partition" = NULL, "offset" = NULL WHERE {_LOST}',
        (ledger_topic, *_ends_params(ends))).rowcount


def pending(conn: psycopg.Connection, ledger_topic: str, ends: dict[int, int]) -> int:
    """Records accepted and not in the broker: not handed on yet, or handed to a ledger
    position at or beyond the partition's end ``ends`` (a broker that restarted empty lost
    them, and the relay hands them again). Those the broker holds count in the processors'
    lag until applied."""
    if conn.execute("SELECT to_regclass('journal.records')").fetchone()[0] is None:
        return 0
    return conn.execute(
        f'SELECT count(*) FROM journal.records j WHERE j."offset" IS NULL OR ({_LOST})',
        (ledger_topic, *_ends_params(ends))).fetchone()[0]


def set_gate(conn: psycopg.Connection, open_: bool, reason: str | None = None) -> None:
    """Open or close the journal. Closing waits for the batches being appended to commit."""
    conn.execute("UPDATE journal.gate SET open = %s, reason = %s WHERE id = 1",
                 (open_, reason))


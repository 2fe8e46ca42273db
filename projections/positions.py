"""How far the projections have got, compared with the end of the log."""

from __future__ import annotations

import psycopg

from events.catalogue import topic_name
from events.log import LogReader


def applied_positions(conn: psycopg.Connection, consumer: str = "ledger",
                      topic: str | None = None) -> dict[int, int]:
    rows = conn.execute(
        "SELECT partition, next_offset FROM projections.offsets WHERE consumer = %s"
        " AND topic = %s",
        (consumer, topic or topic_name("ledger")),
    ).fetchall()
    return {p: o for p, o in rows}


def lag(bootstrap: str, database_url: str) -> dict[int, int]:
    """Records in the log not yet applied, per partition (negative: the log is shorter)."""
    with LogReader(bootstrap) as reader:
        ends = reader.end_offsets()
    with psycopg.connect(database_url) as conn:
        applied = applied_positions(conn)
    return {p: end - applied.get(p, 0) for p, end in ends.items()}


def backlog(bootstrap: str, database_url: str) -> int:
    """Records not applied yet plus ledger facts not published yet: 0 means settled."""
    behind = sum(n for n in lag(bootstrap, database_url).values() if n > 0)
    with psycopg.connect(database_url) as conn:
        pending = conn.execute("SELECT count(*) FROM projections.outbox").fetchone()[0]
    return behind + pending

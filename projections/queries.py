"""The read side's SQL: a few plain queries, nothing clever."""

from __future__ import annotations

from typing import Any

import psycopg

VIEW_SQL = "SELECT doc FROM projections.customer_view WHERE subject_id = %s"
VIEW_HASHES_SQL = """
SELECT subject_id, md5(doc::jsonb::text) FROM projections.customer_view ORDER BY subject_id
"""
DEAD_LETTERS_SQL = """
SELECT topic, partition, "offset", event_type, reason FROM projections.dead_letters
ORDER BY topic, partition, "offset"
"""


def customer_view(conn: psycopg.Connection, subject_id: str) -> dict[str, Any] | None:
    row = conn.execute(VIEW_SQL, (subject_id,)).fetchone()
    return row[0] if row else None


def applied(conn: psycopg.Connection, event_id: str) -> bool:
    """Whether the event of that id was applied (to the customer view and the projections)."""
    return conn.execute("SELECT 1 FROM projections.applied_events WHERE event_id = %s",
                        (event_id,)).fetchone() is not None


def view_hashes(conn: psycopg.Connection) -> dict[str, str]:
    """One hash per subject's view row: to compare a rebuild with the live projection."""
    return dict(conn.execute(VIEW_HASHES_SQL).fetchall())


def dead_letters(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(DEAD_LETTERS_SQL).fetchall()


def subjects_sample(conn: psycopg.Connection, status: str, limit: int) -> list[str]:
    rows = conn.execute(
        "SELECT subject_id FROM projections.customer_view WHERE status = %s"
        " ORDER BY subject_id LIMIT %s", (status, limit)).fetchall()
    return [r[0] for r in rows]

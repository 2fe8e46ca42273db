"""The data-subject requests projection: one row per request, for lists across subjects.

``hook`` runs in the batch transaction of `projections.writer.apply_batch` (registered with
``RESET_SQL`` in `registre.bootstrap`). It does not judge anything itself: for each applied
request event it copies the entry the customer-view fold has just computed
(`processors.rules.requests`, under ``view["requests"]``), so the table and the view always
agree, live and after `registre rebuild`. It also records every ``ErasureRequested`` by subject
and instant, which a fulfilled erasure request is matched with. The queries below read both,
and the access log for the exports an access request is matched with.
Tables: ``projections/migrations/012_requests.sql``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from processors.rules.requests import REQUEST_EVENTS
from projections.writer import Outcome

RESET_SQL = ("DELETE FROM projections.requests", "DELETE FROM projections.erasure_requests")

UPSERT_SQL = """
INSERT INTO projections.requests (subject_id, request_id, kind, channel, received_at, deadline,
    extended_months, completed_at, outcome, doc)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (subject_id, request_id) DO UPDATE SET
    deadline = EXCLUDED.deadline, extended_months = EXCLUDED.extended_months,
    completed_at = EXCLUDED.completed_at, outcome = EXCLUDED.outcome, doc = EXCLUDED.doc
"""

ERASURE_SQL = """
INSERT INTO projections.erasure_requests (event_id, subject_id, occurred_at)
VALUES (%s, %s, %s) ON CONFLICT DO NOTHING
"""

# status -> (condition on a pending/completed row at %(now)s, order)
_LISTS = {
    "open": ("completed_at IS NULL AND deadline > %(now)s", "deadline, request_id"),
    "overdue": ("completed_at IS NULL AND deadline <= %(now)s", "deadline, request_id"),
    "done": ("completed_at IS NOT NULL", "completed_at DESC, request_id"),
    None: ("true", "received_at DESC, request_id"),
}


def _row(subject_id: str, entry: dict[str, Any]) -> tuple[Any, ...]:
    extension = entry["extension"]
    return (subject_id, entry["request_id"], entry["kind"], entry["channel"],
            entry["received_at"], entry["deadline"], extension["months"] if extension else None,
            entry["completed_at"], entry["outcome"], Jsonb(entry))


def rows(outcome: Outcome) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(request rows as the fold left them after the batch, ErasureRequested rows)."""
    requests: dict[tuple[str, str], tuple[Any, ...]] = {}
    erasures = []
    for _, record in outcome.applied:
        if record.type in REQUEST_EVENTS:
            request_id = record.data["request_id"]
            entry = outcome.views[record.subject_id]["requests"][request_id]
            requests[(record.subject_id, request_id)] = _row(record.subject_id, entry)
        elif record.type == "ErasureRequested":
            erasures.append((record.event_id, record.subject_id, record.occurred_at))
    return list(requests.values()), erasures


async def hook(cur: psycopg.AsyncCursor, outcome: Outcome) -> None:
    """Write the batch's requests and erasure requests (same transaction as the view)."""
    requests, erasures = rows(outcome)
    if requests:
        await cur.executemany(UPSERT_SQL, requests)
    if erasures:
        await cur.executemany(ERASURE_SQL, erasures)


# --- reading --------------------------------------------------------------------------------


def find(conn: psycopg.Connection, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(subject id, entry) of every subject that holds a request with that id (normally one)."""
    return conn.execute(
        "SELECT subject_id, doc FROM projections.requests WHERE request_id = %s"
        " ORDER BY subject_id", (request_id,)).fetchall()


def listing(conn: psycopg.Connection, now: datetime, status: str | None = None,
            subject_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(subject id, entry) of the requests with that status at ``now`` (all when None)."""
    where, order = _LISTS[status]
    if subject_id is not None:
        where += " AND subject_id = %(subject)s"
    return conn.execute(
        f"SELECT subject_id, doc FROM projections.requests WHERE {where} ORDER BY {order}",
        {"now": now, "subject": subject_id}).fetchall()


def counts(conn: psycopg.Connection, now: datetime, subject_id: str | None = None
           ) -> dict[str, int]:
    """How many requests are open, overdue and done at ``now``."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE completed_at IS NULL AND deadline > %(now)s),"
        " count(*) FILTER (WHERE completed_at IS NULL AND deadline <= %(now)s),"
        " count(*) FILTER (WHERE completed_at IS NOT NULL)"
        " FROM projections.requests WHERE %(subject)s::text IS NULL OR subject_id = %(subject)s",
        {"now": now, "subject": subject_id}).fetchone()
    return {"open": row[0], "overdue": row[1], "done": row[2]}


def erasure_by(conn: psycopg.Connection, subject_id: str, at: datetime
               ) -> tuple[str, datetime] | None:
    """The subject's first ErasureRequested at or before ``at``: (event id, instant)."""
    return conn.execute(
        "SELECT event_id::text, occurred_at FROM projections.erasure_requests"
        " WHERE subject_id = %s AND occurred_at <= %s ORDER BY occurred_at, event_id LIMIT 1",
        (subject_id, at)).fetchone()


def export_between(conn: psycopg.Connection, subject_id: str, start: datetime, end: datetime
                   ) -> tuple[int, datetime, str, str] | None:
    """The subject's last export in the access log between ``start`` and ``end`` (inclusive):
    (access id, when, reader, case reference)."""
    return conn.execute(
        "SELECT id, read_at, reader, case_ref FROM projections.access_log"
        " WHERE subject_id = %s AND what LIKE 'export%%' AND read_at BETWEEN %s AND %s"
        " ORDER BY read_at DESC, id DESC LIMIT 1", (subject_id, start, end)).fetchone()

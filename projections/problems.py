"""Problems: one subject whose erasure or sweep failed, kept until a retry succeeds.

A failure never stops the others: the processors record it here (subject, job, reason, since
when) and go on; the next round retries it; `registre info`, `registre wait` and the schedule
show it. The reason is written by registre (an error type, or the message of one of its own
rules): it names keys and fields, never a personal value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

_RECORD = """
INSERT INTO projections.problems (subject_id, job, reason, since, last_try, trigger_event_id,
                                  trigger_type)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (subject_id, job) DO UPDATE SET reason = EXCLUDED.reason,
    last_try = EXCLUDED.last_try, attempts = projections.problems.attempts + 1,
    trigger_event_id = coalesce(EXCLUDED.trigger_event_id, projections.problems.trigger_event_id),
    trigger_type = coalesce(EXCLUDED.trigger_type, projections.problems.trigger_type)
"""
_OWN_RULES = (ValueError, LookupError)  # registre's rules explain themselves in these


def reason_of(exc: BaseException) -> str:
    """A one-line reason with no value from outside registre in it."""
    if type(exc).__module__.split(".")[0] in ("processors", "projections", "events") \
            or type(exc) in _OWN_RULES:
        text = " ".join(str(exc).split())[:300]
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return type(exc).__name__


async def record(cur: psycopg.AsyncCursor, subject_id: str, job: str, exc: BaseException,
                 now: datetime, trigger: tuple[str, str] | None = None) -> None:
    """Record (or count again) a failure; ``trigger``: (event id, type) of the deletion or
    erasure whose certificate the retry still owes."""
    await cur.execute(_RECORD, (subject_id, job, reason_of(exc), now, now,
                                *(trigger or (None, None))))


async def resolved(cur: psycopg.AsyncCursor, subject_id: str) -> None:
    """The subject was carried out in full: whatever failed before is done now."""
    await cur.execute("DELETE FROM projections.problems WHERE subject_id = %s", (subject_id,))


async def pending(cur: psycopg.AsyncCursor) -> dict[str, tuple[str, str] | None]:
    """The subjects with an open problem, each with the trigger still owed a certificate."""
    await cur.execute("SELECT subject_id, max(trigger_event_id::text), max(trigger_type)"
                      " FROM projections.problems GROUP BY subject_id ORDER BY 1")
    return {s: (e, t) if e else None for s, e, t in await cur.fetchall()}


def open_problems(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every open problem, oldest first (for `registre info`, `wait` and the schedule)."""
    if conn.execute("SELECT to_regclass('projections.problems')").fetchone()[0] is None:
        return []
    rows = conn.execute(
        "SELECT subject_id, job, reason, since, last_try, attempts FROM projections.problems"
        " ORDER BY since, subject_id, job").fetchall()
    return [{"subject_id": s, "job": j, "reason": r, "since": since.isoformat(),
             "last_try": last.isoformat(), "attempts": n}
            for s, j, r, since, last, n in rows]

"""The consent-history projection: every consent choice by subject, purpose and instant.

``hook`` runs in the batch transaction of `projections.writer.apply_batch` (register it with
``RESET_SQL`` in `projections.hooks`); ``consent_at_sql`` answers "consent of S for P at T"
with one indexed query and gives exactly what the pure fold
`processors.rules.audit.consent_at` gives over the log (same winner, same tie-break, same expiry).
Table: ``projections/migrations/004_consent_history.sql``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from events.model import format_instant
from processors.rules.audit import CHOICES, judge_choice, no_choice
from processors.rules.timeutil import ensure_utc
from projections.writer import Outcome, array_literal

RESET_SQL = ("DELETE FROM projections.consent_history",)
STATUS = {**CHOICES, "ConsentExpired": "expired"}

# one statement per batch (the columns of ``rows``, in order): texts as binary arrays, the
# uuids and numbers as array literals (`projections.writer.array_literal`)
INSERT_SQL = """
INSERT INTO projections.consent_history (subject_id, purpose, occurred_at, status, event_id,
    notice_version, mechanism, choice_event_id, partition, "offset")
SELECT * FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::text[], %s::uuid[],
                     %b::text[], %b::text[], %s::uuid[], %s::int[], %s::bigint[])
ON CONFLICT DO NOTHING
"""
LITERAL = {4, 7, 8, 9}  # the columns sent as array literals

CONSENT_AT_SQL = """
SELECT c.status, c.event_id::text, c.notice_version, c.mechanism, c.occurred_at,
       (SELECT x.event_id::text FROM projections.consent_history x
         WHERE x.choice_event_id = c.event_id AND x.purpose = c.purpose
           AND x.status = 'expired' AND x.occurred_at <= %(at)s
         ORDER BY x.occurred_at, x.partition, x."offset" LIMIT 1)
FROM projections.consent_history c
WHERE c.subject_id = %(subject)s AND c.purpose = %(purpose)s AND c.occurred_at <= %(at)s
  AND c.status <> 'expired'
ORDER BY c.occurred_at DESC, c.partition DESC, c."offset" DESC
LIMIT 1
"""


def rows(outcome: Outcome) -> list[tuple[Any, ...]]:
    """One row per (applied consent event, purpose), in log order."""
    out = []
    for item, record in outcome.applied:
        status = STATUS.get(record.type)
        if status is None:
            continue
        d = record.data
        for purpose in dict.fromkeys(d["purposes"]):
            out.append((record.subject_id, purpose, record.occurred_at, status, record.event_id,
                        d.get("notice_version"), d.get("mechanism"), d.get("choice_event_id"),
                        item.partition, item.offset))
    return out


async def hook(cur: psycopg.AsyncCursor, outcome: Outcome) -> None:
    """Record the consent choices of the batch (same transaction as the customer view)."""
    batch = rows(outcome)
    if batch:
        await cur.execute(INSERT_SQL, [
            array_literal(column) if n in LITERAL else list(column)
            for n, column in enumerate(zip(*batch, strict=True))])


def consent_at_sql(conn: psycopg.Connection, subject_id: str, purpose: str, at: datetime,
                   months: int) -> dict[str, Any]:
    """The consent of ``subject_id`` for ``purpose`` at ``at``, from the projection."""
    at = ensure_utc(at, "at")
    row = conn.execute(CONSENT_AT_SQL,
                       {"subject": subject_id, "purpose": purpose, "at": at}).fetchone()
    if row is None:
        return no_choice()
    status, event_id, notice, mechanism, choice_at, expiry_id = row
    return judge_choice(status, event_id, notice, mechanism, ensure_utc(choice_at), at,
                        expiry_id, months)


def history(conn: psycopg.Connection, subject_id: str) -> list[dict[str, Any]]:
    """Every recorded choice of the subject, oldest first (one entry per event and purpose)."""
    cur = conn.execute(
        "SELECT occurred_at, purpose, status, event_id::text, notice_version, mechanism,"
        " choice_event_id::text FROM projections.consent_history WHERE subject_id = %s"
        " ORDER BY occurred_at, partition, \"offset\", purpose", (subject_id,))
    return [{"at": format_instant(at), "purpose": p, "status": s, "event_id": e,
             "notice_version": n, "mechanism": m, "choice_event_id": c}
            for at, p, s, e, n, m, c in cur.fetchall()]

"""The access log: every restricted read is recorded before the data is returned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg


class MissingCaseReference(ValueError):
    """A restricted read without a case reference (or with one no text column holds) is
    refused."""


def checked_case(case_ref: str | None) -> str:
    """The case reference of a restricted read, stripped; refused when missing or when it
    holds a control character (U+0000 cannot be stored; the others would garble the log)."""
    case_ref = (case_ref or "").strip()
    if not case_ref:
        raise MissingCaseReference("a case reference is required for this read (--case)")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in case_ref):
        raise MissingCaseReference("case reference: control characters are not allowed")
    return case_ref


def record_access(conn: psycopg.Connection, reader: str, subject_id: str, case_ref: str,
                  what: str, at: datetime) -> int:
    """Append one row (committed before the caller returns the data); returns its id."""
    case_ref = checked_case(case_ref)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO projections.access_log (read_at, reader, subject_id, case_ref, what)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (at, reader, subject_id, case_ref, what),
        ).fetchone()
    if not conn.autocommit:  # the block above was a savepoint of the caller's transaction
        conn.commit()
    return row[0]


def accesses(conn: psycopg.Connection, subject_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT read_at, reader, case_ref, what FROM projections.access_log"
        " WHERE subject_id = %s ORDER BY id", (subject_id,)).fetchall()
    return [{"read_at": r.isoformat(), "reader": who, "case_ref": case, "what": what}
            for r, who, case, what in rows]

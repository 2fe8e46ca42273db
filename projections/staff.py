"""Console logins and their sessions in PostgreSQL (`credentials.staff`, `credentials.sessions`,
migration 014).

Plain queries: a password never reaches this module, only its argon2 hash; a session token
never does either, only its SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import errors


class StaffNameTaken(ValueError):
    """Someone live already has that name."""


@dataclass(frozen=True)
class StaffRow:
    id: int
    name: str
    role: str
    hash: str
    created_at: datetime
    removed_at: datetime | None


@dataclass(frozen=True)
class SessionRow:
    """A live session with its person (who is not removed)."""

    staff_id: int
    name: str
    role: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime


_COLUMNS = "id, name, role, hash, created_at, removed_at"


def insert(conn: psycopg.Connection, name: str, role: str, hash_: str, at: datetime) -> None:
    try:
        with conn.transaction():
            conn.execute("INSERT INTO credentials.staff (name, role, hash, created_at)"
                         " VALUES (%s, %s, %s, %s)", (name, role, hash_, at))
    except errors.UniqueViolation:
        raise StaffNameTaken(f"someone named {name!r} exists: remove them first") from None


def live(conn: psycopg.Connection, name: str) -> StaffRow | None:
    found = conn.execute(f"SELECT {_COLUMNS} FROM credentials.staff"
                         " WHERE name = %s AND removed_at IS NULL", (name,)).fetchone()
    return StaffRow(*found) if found else None


def every(conn: psycopg.Connection) -> list[StaffRow]:
    return [StaffRow(*r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM credentials.staff ORDER BY name, created_at").fetchall()]


def remove(conn: psycopg.Connection, name: str, at: datetime) -> int:
    """Remove the live person of that name and end their sessions; how many were (0 or 1)."""
    with conn.transaction():
        gone = conn.execute("UPDATE credentials.staff SET removed_at = %s"
                            " WHERE name = %s AND removed_at IS NULL RETURNING id",
                            (at, name)).fetchall()
        for (staff_id,) in gone:
            conn.execute("DELETE FROM credentials.sessions WHERE staff_id = %s", (staff_id,))
    return len(gone)


def open_session(conn: psycopg.Connection, id_hash: bytes, staff_id: int, at: datetime,
                 expires_at: datetime) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM credentials.sessions WHERE expires_at <= %s", (at,))
        conn.execute("INSERT INTO credentials.sessions"
                     " (id_hash, staff_id, created_at, expires_at, last_seen_at)"
                     " VALUES (%s, %s, %s, %s, %s)", (id_hash, staff_id, at, expires_at, at))


def session(conn: psycopg.Connection, id_hash: bytes) -> SessionRow | None:
    """The session of that hash with its person, if the person is not removed."""
    found = conn.execute(
        "SELECT s.staff_id, p.name, p.role, s.created_at, s.expires_at, s.last_seen_at"
        " FROM credentials.sessions s JOIN credentials.staff p ON p.id = s.staff_id"
        " WHERE s.id_hash = %s AND p.removed_at IS NULL", (id_hash,)).fetchone()
    return SessionRow(*found) if found else None


def touch(conn: psycopg.Connection, id_hash: bytes, at: datetime) -> None:
    conn.execute("UPDATE credentials.sessions SET last_seen_at = %s WHERE id_hash = %s",
                 (at, id_hash))


def end_session(conn: psycopg.Connection, id_hash: bytes) -> int:
    return conn.execute("DELETE FROM credentials.sessions WHERE id_hash = %s",
                        (id_hash,)).rowcount

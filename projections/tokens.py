"""The web service's bearer tokens in PostgreSQL (`credentials.tokens`, migration 010).

Plain queries: the token's secret never reaches this module, only its argon2 hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import errors


class NameTaken(ValueError):
    """A live token already has that name."""


@dataclass(frozen=True)
class TokenRow:
    id: str
    name: str
    hash: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


_COLUMNS = "id, name, hash, scopes, created_at, revoked_at"


def insert(conn: psycopg.Connection, row: TokenRow) -> None:
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO credentials.tokens (id, name, hash, scopes, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (row.id, row.name, row.hash, list(row.scopes), row.created_at))
    except errors.UniqueViolation:
        raise NameTaken(f"a token named {row.name!r} exists: revoke it first") from None


def by_id(conn: psycopg.Connection, token_id: str) -> TokenRow | None:
    found = conn.execute(f"SELECT {_COLUMNS} FROM credentials.tokens WHERE id = %s",
                         (token_id,)).fetchone()
    return _row(found) if found else None


def every(conn: psycopg.Connection) -> list[TokenRow]:
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM credentials.tokens ORDER BY name, created_at").fetchall()]


def revoke(conn: psycopg.Connection, name: str, at: datetime) -> int:
    """Revoke the live token of that name; how many were (0 or 1)."""
    return conn.execute(
        "UPDATE credentials.tokens SET revoked_at = %s WHERE name = %s AND revoked_at IS NULL",
        (at, name)).rowcount


def _row(r: tuple) -> TokenRow:
    return TokenRow(r[0], r[1], r[2], tuple(r[3]), r[4], r[5])

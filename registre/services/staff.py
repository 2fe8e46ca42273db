"""People who log in to the compliance console: add, list, remove; log in; sessions.

A person has a name (the reader the access log records for everything they read), a role
(``compliance``: the console's questions and actions; ``admin``: reserved for managing tokens
and people) and a password stored only as an argon2id hash. Adding, listing and removing is
`registre staff` as the admin login; logging in and sessions are the web service's, as the
compliance login.

A session is a random token held by the browser in a cookie; the database keeps only its
SHA-256, with the person, an absolute expiry (`SESSION_HOURS`) and the last time it was used
(idle sessions end after `IDLE_MINUTES`). Removing a person ends their sessions at once.

Logging in says nothing about which of the name or the password was wrong, costs the same
argon2 verification whether the name exists or not, and `Throttle` refuses further attempts
for a name (or from an address) after a few failures in a short window.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from events.model import format_instant
from projections import staff as store
from projections import tokens as token_store

ROLES = ("compliance", "admin")
SESSION_HOURS = 8
IDLE_MINUTES = 30
TOUCH_SECONDS = 60  # last_seen_at is written at most once a minute per session
MIN_PASSWORD, MAX_PASSWORD = 12, 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_hasher = PasswordHasher()
_DUMMY = _hasher.hash(secrets.token_urlsafe(24))  # verified against when the name is unknown


class BadStaffRequest(ValueError):
    """A name, role or password that cannot be used (the message never holds the password)."""


class NoSuchStaff(LookupError):
    """Nobody live has that name."""


class LoginRefused(ValueError):
    """Wrong name or password (which one is never said), or too many attempts."""


@dataclass(frozen=True)
class Staff:
    """Who is logged in: the access log's reader name and the role."""

    name: str
    role: str
    staff_id: int


def check_request(name: str, role: str, password: str) -> None:
    if not _NAME.match(name or ""):
        raise BadStaffRequest("name: 1 to 64 letters, digits and ._- (first a letter or a "
                              "digit)")
    if role not in ROLES:
        raise BadStaffRequest(f"--role: one of {', '.join(ROLES)}")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadStaffRequest(f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if password != password.strip() or "\n" in password:
        raise BadStaffRequest("password: no leading or trailing blank, no line break")


def add(conn: psycopg.Connection, name: str, role: str, password: str, now: datetime
        ) -> dict[str, Any]:
    """A new console login; the password is stored as an argon2id hash only."""
    check_request(name, role, password)
    if any(t.name == name and t.revoked_at is None for t in token_store.every(conn)):
        raise BadStaffRequest(f"name {name!r}: a token has that name, and the access log could"
                              " not tell the two readers apart; choose another name")
    store.insert(conn, name, role, _hasher.hash(password), now)
    return {"name": name, "role": role, "created_at": format_instant(now)}


def listing(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Everyone, live or removed, without any hash."""
    return [{"name": r.name, "role": r.role, "created_at": format_instant(r.created_at),
             "removed_at": format_instant(r.removed_at) if r.removed_at else None}
            for r in store.every(conn)]


def remove(conn: psycopg.Connection, name: str, now: datetime) -> dict[str, Any]:
    """Remove the live person of that name; their sessions end at once."""
    if not store.remove(conn, name, now):
        raise NoSuchStaff(f"nobody live is named {name!r}")
    return {"removed": name, "removed_at": format_instant(now)}


def authenticate(conn: psycopg.Connection, name: str, password: str) -> Staff:
    """The person, if the password is theirs; LoginRefused otherwise (same cost either way)."""
    row = store.live(conn, name) if _NAME.match(name or "") else None
    try:
        _hasher.verify(row.hash if row else _DUMMY, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        row = None
    if row is None:
        raise LoginRefused("wrong name or password")
    return Staff(row.name, row.role, row.id)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def open_session(conn: psycopg.Connection, staff: Staff, now: datetime,
                 hours: float = SESSION_HOURS) -> str:
    """A new session for ``staff``: the token for the cookie (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    store.open_session(conn, _digest(token), staff.staff_id, now, now + timedelta(hours=hours))
    return token


def session_of(conn: psycopg.Connection, token: str, now: datetime,
               idle_minutes: float = IDLE_MINUTES) -> Staff | None:
    """Who holds this session token now, or None (unknown, expired, idle, person removed)."""
    if not token or len(token) > 200:
        return None
    digest = _digest(token)
    row = store.session(conn, digest)
    if row is None:
        return None
    if now >= row.expires_at or now - row.last_seen_at >= timedelta(minutes=idle_minutes):
        store.end_session(conn, digest)
        return None
    if now - row.last_seen_at >= timedelta(seconds=TOUCH_SECONDS):
        store.touch(conn, digest, now)
    return Staff(row.name, row.role, row.staff_id)


def close_session(conn: psycopg.Connection, token: str) -> None:
    """End the session of that token (logout); nothing if there is none."""
    if token:
        store.end_session(conn, _digest(token))


class Throttle:
    """Failed logins per key (a name, an address) in a sliding window, in this process.

    After ``limit`` failures within ``window`` seconds, `blocked` says so until the oldest of
    them leaves the window. A success clears the key. Names are counted whether or not they
    exist, so the throttle tells nothing about who exists.
    """

    def __init__(self, limit: int = 5, window: float = 900.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._now = monotonic
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str) -> list[float]:
        cutoff = self._now() - self.window
        kept = [t for t in self._failures.get(key, []) if t > cutoff]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key)) >= self.limit

    def failed(self, key: str) -> None:
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()
            self._failures[key] = [*self._recent(key), self._now()]

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

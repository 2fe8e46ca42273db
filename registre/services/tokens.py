"""Bearer tokens of the web service: create (shown once), list, revoke, verify.

A token is ``rgt_<id>_<secret>``. The id (16 hex digits) is not secret: it finds the row. The
secret is stored only as an argon2id hash (argon2-cffi's `PasswordHasher`: salted, slow on
purpose), so a stolen table gives no usable token. Verifying costs tens of milliseconds by
design; `TokenVerifier` remembers a success for ``ttl`` seconds under the SHA-256 of the token
(kept in memory only), so a service that publishes many batches pays argon2 once per ``ttl``.
A revoked token is refused by every web process within ``ttl`` seconds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from events.model import format_instant
from projections import tokens as store

SCOPES = ("publish", "compliance", "admin")
PREFIX = "rgt_"
CACHE_SECONDS = 30.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN = re.compile(r"^rgt_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
_hasher = PasswordHasher()


class BadToken(ValueError):
    """Not a valid, live token (the message never repeats the token)."""


class NoSuchToken(LookupError):
    """No live token has that name."""


class BadTokenRequest(ValueError):
    """A token name or scope that cannot be used."""


@dataclass(frozen=True)
class Caller:
    """Who presents a valid token: its name (the reader of the access log) and its scopes."""

    name: str
    scopes: frozenset[str]
    token_id: str


def check_request(name: str, scopes: list[str]) -> tuple[str, tuple[str, ...]]:
    if not _NAME.match(name or ""):
        raise BadTokenRequest("token name: 1 to 64 letters, digits and ._- (first a letter or "
                              "a digit)")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise BadTokenRequest(f"--scope: one or more of {', '.join(SCOPES)}")
    return name, tuple(s for s in SCOPES if s in scopes)


def create(conn: psycopg.Connection, name: str, scopes: list[str], now: datetime
           ) -> dict[str, Any]:
    """A new token: stored as an argon2 hash; the clear token is in the answer only."""
    name, wanted = check_request(name, scopes)
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    store.insert(conn, store.TokenRow(token_id, name, _hasher.hash(secret), wanted, now, None))
    return {"name": name, "token": f"{PREFIX}{token_id}_{secret}", "scopes": list(wanted)}


def listing(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every token, live or revoked, without any secret."""
    return [{"name": r.name, "id": r.id, "scopes": list(r.scopes),
             "created_at": format_instant(r.created_at),
             "revoked_at": format_instant(r.revoked_at) if r.revoked_at else None}
            for r in store.every(conn)]


def revoke(conn: psycopg.Connection, name: str, now: datetime) -> dict[str, Any]:
    if not store.revoke(conn, name, now):
        raise NoSuchToken(f"no live token named {name!r}")
    return {"revoked": name, "revoked_at": format_instant(now)}


class TokenVerifier:
    """Checks bearer tokens against the table; successes are remembered ``ttl`` seconds."""

    def __init__(self, connect: Callable[[], AbstractContextManager[psycopg.Connection]],
                 ttl: float = CACHE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self._ttl = ttl
        self._now = monotonic
        self._cache: dict[bytes, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Caller:
        """The caller a token stands for; BadToken when it is malformed, unknown or revoked."""
        fingerprint = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        hit = self._cache.get(fingerprint)
        if hit is not None and self._now() - hit[0] < self._ttl:
            return hit[1]
        caller = self._check(token)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[fingerprint] = (self._now(), caller)
        return caller

    def _check(self, token: str) -> Caller:
        match = _TOKEN.match(token)
        if match is None:
            raise BadToken("not a registre token")
        token_id, secret = match.groups()
        with self._connect() as conn:
            row = store.by_id(conn, token_id)
        if row is None or row.revoked_at is not None:
            raise BadToken("unknown or revoked token")
        try:
            _hasher.verify(row.hash, secret)
        except (VerificationError, InvalidHashError):
            raise BadToken("unknown or revoked token") from None
        return Caller(row.name, frozenset(row.scopes), row.id)

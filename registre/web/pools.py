"""The web process's database connections: a few kept open per login, lent one request at a time.

Opening a PostgreSQL connection costs more than most questions it is opened for: a new
backend, and a SCRAM login (thousands of PBKDF2 rounds on both sides). A web process keeps
a small pool per login (psycopg_pool), opened on first use. Each pool connects as its role's
own login, so pooling changes no privilege. A connection is checked before it is lent (a
database that restarted leaves broken ones behind) and given back after the request, its
transaction finished; it carries the name ``registre-web-<role>`` in ``pg_stat_activity``.
A request that gets no connection within the wait fails as the database being down or busy,
whichever it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

MAX_PER_LOGIN = 8  # a question holds one connection per login for its duration
WAIT_SECONDS = 10.0  # then the request fails: 503, "database busy" or "database unreachable"


class Pools:
    """One connection pool per login, made on first use, closed with the web process."""

    def __init__(self, url: Callable[[str], str], max_size: int = MAX_PER_LOGIN,
                 wait: float = WAIT_SECONDS) -> None:
        self._url = url
        self._max, self._wait = max_size, wait
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.Lock()

    @contextmanager
    def connection(self, role: str) -> Iterator[psycopg.Connection]:
        """An open autocommit connection as ``role``'s login, for a ``with`` block. When none
        comes within the wait: OperationalError if the database does not take a new login
        either (it is down), else PoolTimeout (every connection is in use)."""
        pool = self._pool(role)
        try:
            conn = pool.getconn()
        except PoolTimeout:
            with psycopg.connect(self._url(role), connect_timeout=3):
                pass  # it answers: the pool is busy, not the database down
            raise
        try:
            yield conn
        finally:
            pool.putconn(conn)  # a transaction left open is rolled back, a broken one dropped

    def _pool(self, role: str) -> ConnectionPool:
        pool = self._pools.get(role)
        if pool is None:
            with self._lock:
                pool = self._pools.get(role)
                if pool is None:
                    pool = self._pools[role] = ConnectionPool(
                        self._url(role), min_size=1, max_size=self._max, open=True,
                        kwargs={"autocommit": True, "application_name": f"registre-web-{role}"},
                        check=ConnectionPool.check_connection, timeout=self._wait,
                        name=f"web-{role}")
        return pool

    def close(self) -> None:
        """Close every pool and its connections (at shutdown)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

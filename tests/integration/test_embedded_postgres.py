"""The embedded PostgreSQL as `deploy.runtime.EmbeddedPostgres` creates it (the session's
server is one), and the view column of the migrated schema: what the README's Configuration
and Performance sections say of them."""

from __future__ import annotations

import psycopg
import pytest

from deploy.runtime import TUNING

pytestmark = pytest.mark.integration


def test_a_new_embedded_cluster_runs_with_registres_settings(pg_server: str) -> None:
    wanted = dict(line.split(" = ") for line in TUNING.splitlines()
                  if line and not line.startswith("#"))
    assert set(wanted) == {"shared_buffers", "max_wal_size", "checkpoint_timeout",
                           "checkpoint_completion_target"}
    with psycopg.connect(pg_server) as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in wanted}
        durable = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                   for name in ("fsync", "full_page_writes", "synchronous_commit")}
    assert shown == wanted
    assert durable == {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


def test_the_customer_view_is_stored_as_json(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        kind = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                            " WHERE attrelid = 'projections.customer_view'::regclass"
                            " AND attname = 'doc'").fetchone()[0]
    assert kind == "json"

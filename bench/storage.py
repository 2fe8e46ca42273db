"""What a ledger costs to keep: the embedded broker's memory and the database's size, per event.

Used by `bench.scaling` at every size (the figures of issue 15, item 6, and the README's
projection to 100M events):

- **broker**: resident memory (RSS, psutil) of the embedded broker (Tansu, log in memory) holding
  the ledger, its checkpoints and dead letters, minus the same broker's RSS before the first
  record was published; per million events.
- **database**: ``pg_database_size`` of the database the processors applied the log into, minus
  the size of a freshly migrated one; and ``pg_total_relation_size`` (table, indexes, TOAST)
  of every table of registre's schemas, each per million events.
"""

from __future__ import annotations

from typing import Any

import psutil
import psycopg

SCHEMAS = ("projections", "keystore", "tombstones", "integrity", "credentials")


def rss_bytes(pid: int | None) -> int:
    try:
        return psutil.Process(pid).memory_info().rss if pid else 0
    except psutil.Error:
        return 0


def database_bytes(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def table_bytes(url: str) -> dict[str, int]:
    """Every table of registre's schemas: total size (heap, indexes, TOAST)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = ANY(%s) ORDER BY 2 DESC",
            (list(SCHEMAS),)).fetchall()
    return dict(rows)


def figures(events: int, broker_empty: int, broker_full: int, database_url: str,
            empty_database: int) -> dict[str, Any]:
    """Per-million figures of one ledger of ``events`` records."""
    per_m = 1e6 / events
    tables = table_bytes(database_url)
    size = database_bytes(database_url)
    return {
        "events": events,
        "broker_rss_mb": broker_full / 2**20,
        "broker_rss_mb_per_1m": max(0, broker_full - broker_empty) * per_m / 2**20,
        "database_mb": size / 2**20,
        "database_mb_per_1m": max(0, size - empty_database) * per_m / 2**20,
        "tables_mb_per_1m": {t: round(b * per_m / 2**20, 1) for t, b in tables.items()
                             if b > 64 * 1024},
    }

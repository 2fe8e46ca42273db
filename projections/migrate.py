"""Apply the SQL migrations of `projections/migrations/` in order, each once, and record them."""

from __future__ import annotations

from importlib import resources

import psycopg

_LOCK = 7_146_240_001  # advisory lock id: one migrator at a time


def migration_files() -> list[tuple[str, str]]:
    root = resources.files("projections").joinpath("migrations")
    files = sorted(e.name for e in root.iterdir() if e.name.endswith(".sql"))
    return [(name, root.joinpath(name).read_text(encoding="utf-8")) for name in files]


def migrate(database_url: str) -> list[str]:
    """Apply what is missing; return the names applied now. Each file runs in one transaction."""
    applied_now = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.registre_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT name FROM public.registre_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            with conn.transaction():
                conn.execute(sql)
                conn.execute("INSERT INTO public.registre_migrations (name) VALUES (%s)", (name,))
            applied_now.append(name)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    return applied_now

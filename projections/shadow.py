"""The shadow side of a blue/green rebuild in PostgreSQL (migration 016).

A rebuild writes every projection into schema ``projections_next`` (`prepare`, then the bulk
COPYs of `projections.bulk`, then `index`), catches up with the live processors there through
the batch writer (``apply_batch(..., schema=NEXT)``), and swaps the shadow tables in
(`forget_destroyed_contacts`, then `swap_tables`) inside a transaction that holds the
projection lock. `discard` drops the shadow of an interrupted rebuild. The functions of
migration 016 run as the tables' owner; the rebuild connects as the processor role.
"""

from __future__ import annotations

from typing import Any

import psycopg

from events.catalogue import topic_name
from projections.bulk import COLUMNS, NEXT
from projections.writer import LIVE

REBUILD_LOCK = 7_146_240_003  # one rebuild at a time (a session lock held by the rebuild)
# a subject whose contact key is destroyed is in no lookup row (`projections.lookup`)
FORGET_DESTROYED_CONTACTS = f"""
DELETE FROM {NEXT}.contact_lookup l USING tombstones.destroyed_keys d
WHERE d.category = 'contact' AND d.subject_id = l.subject_id
"""


class RebuildRefused(RuntimeError):
    """The rebuild cannot start or finish (another one runs, the schema does not match)."""


def acquire(conn: psycopg.Connection) -> None:
    """Hold the rebuild lock for this session; refuse if another rebuild holds it."""
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (REBUILD_LOCK,)).fetchone()[0]:
        raise RebuildRefused("another `registre rebuild` is running on this database")


def prepare(conn: psycopg.Connection) -> list[str]:
    """Fresh, empty shadow tables; the projections it will swap (checked against the bulk
    pass's own list: a projection table it would not fill is refused)."""
    tables = conn.execute("SELECT projections.rebuild_tables()").fetchone()[0]
    if set(tables) != set(COLUMNS):
        raise RebuildRefused(f"the database's projections {sorted(tables)} are not the ones this"
                             f" registre rebuilds {sorted(COLUMNS)}: upgrade one or the other")
    conn.execute("SELECT projections.rebuild_prepare()")
    return tables


INDEX_MEMORY = "256MB"  # sorts of the index builds in memory (the default 64MB spills)


def index(database_url: str, sessions: int = 2) -> None:
    """The live tables' keys and indexes on the shadow tables (after the bulk COPY), the
    largest tables first, ``sessions`` tables at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [t for t, in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE n.nspname = '{NEXT}' AND c.relkind = 'r'"
            " ORDER BY pg_total_relation_size(c.oid) DESC, c.relname").fetchall()]

    def build(table: str) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"SET maintenance_work_mem = '{INDEX_MEMORY}'")
            conn.execute("SELECT projections.rebuild_index_table(%s)", (table,))

    with ThreadPoolExecutor(max(1, sessions)) as pool:
        list(pool.map(build, tables))


def discard(conn: psycopg.Connection) -> None:
    conn.execute("SELECT projections.rebuild_discard()")


def duplicated_ids(conn: psycopg.Connection) -> dict[str, list[tuple[int, int]]]:
    """Event ids the bulk pass applied in more than one partition, with where."""
    rows = conn.execute(
        f"SELECT event_id::text, array_agg(ARRAY[partition::bigint, \"offset\"])"
        f" FROM {NEXT}.applied_events GROUP BY event_id HAVING count(*) > 1").fetchall()
    return {e: [(int(p), int(o)) for p, o in where] for e, where in rows}


def live_winners(conn: psycopg.Connection, event_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Where the live processors applied these event ids."""
    rows = conn.execute(
        f"SELECT event_id::text, partition, \"offset\" FROM {LIVE}.applied_events"
        " WHERE event_id = ANY(%s::uuid[])", (event_ids,)).fetchall()
    return {e: (p, o) for e, p, o in rows}


def write_totals(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """The analytics totals, summed over the partitions by the caller."""
    with conn.cursor() as cur, cur.copy(
            f"COPY {NEXT}.analytics_totals ({', '.join(COLUMNS['analytics_totals'])})"
            " FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def write_positions(conn: psycopg.Connection, positions: dict[int, int]) -> None:
    """The shadow's positions: where its projections stand in each partition."""
    topic = topic_name("ledger")
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {NEXT}.offsets (consumer, topic, partition, next_offset)"
            " VALUES ('ledger', %s, %s, %s)",
            [(topic, p, o) for p, o in sorted(positions.items())])


async def positions(conn: psycopg.AsyncConnection, schema: str) -> dict[int, int]:
    """Applied positions of the live projections or of the shadow."""
    cur = await conn.execute(
        f"SELECT partition, next_offset FROM {schema}.offsets WHERE consumer = 'ledger'"
        " AND topic = %s", (topic_name("ledger"),))
    return {p: o for p, o in await cur.fetchall()}


async def keep_vacuum_away(conn: psycopg.AsyncConnection) -> None:
    """In the swap's transaction, before the projection lock: SHARE UPDATE EXCLUSIVE on the
    live and the shadow tables. It conflicts with no reader or writer, only with
    (auto)vacuum, which is waited out or cancelled here rather than found holding a table
    when the swap asks for ACCESS EXCLUSIVE (else the processors would wait behind the
    projection lock meanwhile). The shadow's freshly loaded tables are what autovacuum picks
    next: a million rows inserted is over its insert threshold."""
    tables = (await (await conn.execute("SELECT projections.rebuild_tables()")).fetchone())[0]
    await conn.execute("LOCK TABLE " + ", ".join(f"{schema}.{t}" for schema in (LIVE, NEXT)
                                                 for t in tables)
                       + " IN SHARE UPDATE EXCLUSIVE MODE")


async def forget_destroyed_contacts(conn: psycopg.AsyncConnection) -> int:
    """Inside the swap's transaction: drop from the shadow's lookup index the subjects whose
    contact key was destroyed meanwhile. Returns the lookup rows so dropped."""
    return (await conn.execute(FORGET_DESTROYED_CONTACTS)).rowcount


async def swap_tables(conn: psycopg.AsyncConnection) -> None:
    """Inside the caller's transaction (projection lock held, live positions reached, destroyed
    contacts forgotten): swap every shadow table in."""
    await conn.execute("SELECT projections.rebuild_swap()")

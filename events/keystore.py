"""The key store: per-subject data keys in PostgreSQL, stored only wrapped by the master key.

Identity and contact keys are one per subject x category (period ``""``); connection and
location keys are one per subject x category x month (period ``"YYYY-MM"``), so that data can
expire month by month. Destroying a key deletes its row: every ciphertext it protected, in every
topic, table and backup, becomes unreadable. An erased subject is remembered (pseudonymous id
only) and no key is ever created for it again. Schema: ``projections/migrations/001_keystore.sql``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import psycopg

from events.crypto import MasterKeyError, new_data_key, unwrap_key, wrap_key
from events.keys import KeyRef


def _ref_order(ref: KeyRef) -> tuple[str, str, str]:
    """The ref as a plain tuple: KeyRef's order, compared and hashed at C speed."""
    return (ref.subject_id, ref.category, ref.period)


# A subject's key lock: every creation and destruction of its keys takes it (exclusive).
_LOCK_TEMPLATE = "SELECT {}(hashtext(s)) FROM unnest(%s::text[]) s ORDER BY s"
LOCK_SQL = _LOCK_TEMPLATE.format("pg_advisory_xact_lock")
SHARED_LOCK_SQL = _LOCK_TEMPLATE.format("pg_advisory_xact_lock_shared")
KEY_REFS_SQL = "SELECT DISTINCT category, period FROM keystore.data_keys WHERE subject_id = %s"
DESTROY_SQL = """
DELETE FROM keystore.data_keys WHERE (subject_id, category, period) IN
    (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))
RETURNING subject_id, category, period
"""
TOMBSTONE_SQL = """
INSERT INTO tombstones.destroyed_keys (subject_id, category, period, destroyed_at, reason)
SELECT s, c, p, %s, %s FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(s, c, p)
ON CONFLICT DO NOTHING
"""
MARK_ERASED_SQL = (
    "INSERT INTO keystore.erased_subjects (subject_id, erased_at) VALUES (%s, %s)"
    " ON CONFLICT DO NOTHING",
    "INSERT INTO tombstones.erased_subjects (subject_id, erased_at) VALUES (%s, %s)"
    " ON CONFLICT DO NOTHING",
)
# The arrays of the next two statements go in binary (%b): text arrays cost the client ten times
# the CPU to write (quoting, bytea escaping) and the server more to parse.
_SELECT_SQL = """
SELECT subject_id, category, period, version, wrapped FROM keystore.data_keys
WHERE (subject_id, category, period) IN (SELECT * FROM unnest(%b::text[], %b::text[], %b::text[]))
ORDER BY version
"""
# Version 1 of each new key, unless its subject was erased or that very key destroyed before.
_INSERT_SQL = """
INSERT INTO keystore.data_keys (subject_id, category, period, version, wrapped)
SELECT n.s, n.c, n.p, 1, n.w
FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[]) AS n(s, c, p, w)
WHERE NOT EXISTS (SELECT 1 FROM keystore.erased_subjects e WHERE e.subject_id = n.s)
  AND NOT EXISTS (SELECT 1 FROM tombstones.destroyed_keys t
                  WHERE t.subject_id = n.s AND t.category = n.c AND t.period = n.p)
ON CONFLICT DO NOTHING
RETURNING subject_id, category, period
"""


class KeyStore:
    """Get-or-create keys for writing, look up keys for reading, destroy keys for erasure."""

    def __init__(
        self,
        conn: psycopg.Connection,
        master: bytes,
        cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conn = conn
        self._master = master
        self._ttl = cache_seconds
        self._now = monotonic
        self._cache: dict[KeyRef, tuple[float, int, bytes]] = {}

    @classmethod
    def connect(cls, database_url: str, master: bytes, cache_seconds: float = 0.0) -> KeyStore:
        return cls(psycopg.connect(database_url, autocommit=True), master, cache_seconds)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch(self, refs: list[KeyRef]) -> dict[KeyRef, dict[int, bytes]]:
        out: dict[KeyRef, dict[int, bytes]] = {}
        if not refs:
            return out
        rows = self._conn.execute(
            _SELECT_SQL,
            ([r.subject_id for r in refs], [r.category for r in refs], [r.period for r in refs]),
        ).fetchall()
        for subject, category, period, version, wrapped in rows:
            ref = KeyRef(subject, category, period)
            out.setdefault(ref, {})[version] = unwrap_key(
                self._master, ref.key_id(version), bytes(wrapped)
            )
        return out

    def keys_for_writing(self, refs: Iterable[KeyRef]) -> dict[KeyRef, tuple[int, bytes]]:
        """The newest key of each ref, created where missing; erased subjects get none."""
        found: dict[KeyRef, tuple[int, bytes]] = {}
        missing = []
        now = self._now()
        for ref in refs if isinstance(refs, set | frozenset) else set(refs):
            hit = self._cache.get(ref)
            if hit is not None and now - hit[0] < self._ttl:
                found[ref] = (hit[1], hit[2])
            else:
                missing.append(ref)
        if missing:
            missing.sort(key=_ref_order)
            with self._conn.transaction():
                self._conn.execute(LOCK_SQL, (sorted({r.subject_id for r in missing}),))
                existing = self._fetch(missing)
                to_create = [r for r in missing if r not in existing]
                if to_create:
                    existing.update(self._create(to_create))
            stamp = self._now()
            for ref, versions in existing.items():
                version = max(versions)
                found[ref] = (version, versions[version])
                self._cache[ref] = (stamp, version, versions[version])
        return found

    def _create(self, refs: list[KeyRef]) -> dict[KeyRef, dict[int, bytes]]:
        """Version 1 of each ref, in one statement (the caller holds the subjects' locks).

        The keys generated here are kept as they are (no read back, no unwrap). A ref the
        statement skipped is read again: its subject was erased or the key destroyed (nothing
        comes back), or a key-store restore inserted it meanwhile (that key comes back).
        """
        fresh = [new_data_key() for _ in refs]
        rows = self._conn.execute(_INSERT_SQL, (
            [r.subject_id for r in refs], [r.category for r in refs], [r.period for r in refs],
            [wrap_key(self._master, r.key_id(1), key) for r, key in zip(refs, fresh, strict=True)],
        )).fetchall()
        created = set(rows)  # (subject_id, category, period) tuples
        out: dict[KeyRef, dict[int, bytes]] = {}
        skipped = []
        for ref, key in zip(refs, fresh, strict=True):
            if _ref_order(ref) in created:
                out[ref] = {1: key}
            else:
                skipped.append(ref)
        if skipped:
            out.update(self._fetch(skipped))
        return out

    def keys_for_reading(self, refs: Iterable[KeyRef]) -> dict[tuple[KeyRef, int], bytes]:
        """Every existing version of the given refs; destroyed keys are simply absent."""
        fetched = self._fetch(sorted(set(refs)))
        return {(ref, v): key for ref, versions in fetched.items() for v, key in versions.items()}

    def ended_subjects(self, subject_ids: Iterable[str]) -> set[str]:
        """Those of the subjects whose account ended (deleted or erased): no new key, no new
        account under that id."""
        rows = self._conn.execute(
            "SELECT subject_id FROM keystore.erased_subjects WHERE subject_id = ANY(%s)",
            (sorted(set(subject_ids)),)).fetchall()
        return {row[0] for row in rows}

    def applied_events(self, event_ids: Iterable[str]) -> set[str]:
        """Those of the event ids the processors applied (a publisher tells a retry of an
        original event from a new one with it)."""
        rows = self._conn.execute(
            "SELECT event_id::text FROM projections.applied_events"
            " WHERE event_id = ANY(%s::uuid[])", (sorted(set(event_ids)),)).fetchall()
        return {row[0] for row in rows}

    def is_erased(self, subject_id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM keystore.erased_subjects WHERE subject_id = %s", (subject_id,)
        ).fetchone()
        return row is not None

    def forget_cache(self, subject_id: str | None = None) -> None:
        for ref in [r for r in self._cache if subject_id is None or r.subject_id == subject_id]:
            del self._cache[ref]

    def key_refs(self, subject_id: str) -> list[KeyRef]:
        """Every key the subject still has."""
        rows = self._conn.execute(KEY_REFS_SQL, (subject_id,)).fetchall()
        return sorted(KeyRef(subject_id, c, p) for c, p in rows)

    def all_key_refs(self) -> dict[str, list[KeyRef]]:
        """Every key that still exists, by subject (for the retention schedule)."""
        out: dict[str, list[KeyRef]] = {}
        for subject, category, period in self._conn.execute(
                "SELECT DISTINCT subject_id, category, period FROM keystore.data_keys"
                " ORDER BY 1, 2, 3").fetchall():
            out.setdefault(subject, []).append(KeyRef(subject, category, period))
        return out

    def check_master_key(self) -> int:
        """Unwrap one stored key, if any (MasterKeyError if it does not); how many are stored."""
        count = self._conn.execute("SELECT count(*) FROM keystore.data_keys").fetchone()[0]
        row = self._conn.execute(
            "SELECT subject_id, category, period, version, wrapped FROM keystore.data_keys"
            " LIMIT 1").fetchone()
        if row is not None:
            subject, category, period, version, wrapped = row
            unwrap_key(self._master, KeyRef(subject, category, period).key_id(version),
                       bytes(wrapped))
        return count

    def mark_erased(self, subject_id: str, at: datetime) -> None:
        """Remember that the subject was erased: no key will ever be created for it again."""
        with self._conn.transaction():
            self._conn.execute(LOCK_SQL, ([subject_id],))
            for sql in MARK_ERASED_SQL:
                self._conn.execute(sql, (subject_id, at))
        self.forget_cache(subject_id)

    def destroy(self, refs: Iterable[KeyRef], at: datetime, reason: str) -> list[KeyRef]:
        """Delete the keys (every version) and record their ids in the tombstone list.

        Returns the refs that existed and are now gone. The tombstones live in their own
        schema so that a restored key-store backup can be scrubbed again (see `reapply_tombstones`).
        """
        refs = sorted(set(refs))
        if not refs:
            return []
        args = ([r.subject_id for r in refs], [r.category for r in refs], [r.period for r in refs])
        with self._conn.transaction():
            self._conn.execute(LOCK_SQL, (sorted({r.subject_id for r in refs}),))
            rows = self._conn.execute(DESTROY_SQL, args).fetchall()
            self._conn.execute(TOMBSTONE_SQL, (at, reason, *args))
        for r in refs:
            self._cache.pop(r, None)
        return sorted({KeyRef(*row) for row in rows})

    def reapply_tombstones(self) -> int:
        """Delete every key whose id is in the tombstone list (after a key-store restore)."""
        n = reapply_tombstones(self._conn)
        self._cache.clear()
        return n

    def restore(self, rows: Iterable[tuple[str, str, str, int, bytes]]) -> tuple[int, int]:
        """Load wrapped keys from a backup, then re-apply the tombstones.

        Returns (rows restored, keys destroyed again). A key destroyed after the backup was
        taken never comes back.
        """
        with self._conn.transaction():
            with self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO keystore.data_keys (subject_id, category, period, version,"
                    " wrapped) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", list(rows))
                restored = cur.rowcount
            again = reapply_tombstones(self._conn)
        self._cache.clear()
        return restored, again

    def backup(self) -> Iterable[tuple[str, str, str, int, bytes]]:
        """Every wrapped key (useless without the master key), for `registre keys backup`."""
        return self._conn.execute(
            "SELECT subject_id, category, period, version, wrapped FROM keystore.data_keys"
            " ORDER BY subject_id, category, period, version").fetchall()


def reapply_tombstones(conn: psycopg.Connection) -> int:
    """Destroy again every key listed in the tombstones; remember erased subjects again.

    Run when the key store is restored and whenever registre starts.
    """
    with conn.transaction():
        n = conn.execute(
            "DELETE FROM keystore.data_keys k USING tombstones.destroyed_keys t"
            " WHERE k.subject_id = t.subject_id AND k.category = t.category"
            " AND k.period = t.period"
        ).rowcount
        conn.execute(
            "INSERT INTO keystore.erased_subjects SELECT * FROM tombstones.erased_subjects"
            " ON CONFLICT DO NOTHING"
        )
    return n


# --- inside a caller's transaction -----------------------------------------------------------
# The processors destroy keys in the same transaction that shows a subject deleted, and read a
# connection's location key in the batch that counts it: these run on the caller's cursor and
# never commit.


async def lock_subject_keys(cur: psycopg.AsyncCursor, subject_id: str) -> list[KeyRef]:
    """Lock the subject's keys until the transaction ends; every key it still has."""
    await cur.execute(LOCK_SQL, ([subject_id],))
    await cur.execute(KEY_REFS_SQL, (subject_id,))
    return sorted(KeyRef(subject_id, c, p) for c, p in await cur.fetchall())


async def share_subject_locks(cur: psycopg.AsyncCursor, subject_ids: Iterable[str]) -> None:
    """Hold the subjects' key locks, shared, until the transaction ends: a destruction of their
    keys waits for the transaction to commit, or the transaction for the destruction. Take
    them before reading the keys (a statement of its own: under READ COMMITTED the read then
    sees a destruction that committed meanwhile), for what is derived from a key and must not
    outlive it (the lookup index). Advisory, not ``FOR SHARE``: that would need UPDATE on the
    keys, which the processors do not have."""
    subjects = sorted(set(subject_ids))
    if subjects:
        await cur.execute(SHARED_LOCK_SQL, (subjects,))


async def mark_erased_in(cur: psycopg.AsyncCursor, subject_id: str, at: datetime) -> None:
    """Remember the subject as erased (no key is ever created for it again)."""
    for sql in MARK_ERASED_SQL:
        await cur.execute(sql, (subject_id, at))


async def destroy_in(cur: psycopg.AsyncCursor, refs: Iterable[KeyRef], at: datetime,
                     reason: str) -> None:
    """Delete the keys (every version) and record them in the tombstones."""
    refs = sorted(set(refs))
    if not refs:
        return
    args = ([r.subject_id for r in refs], [r.category for r in refs], [r.period for r in refs])
    await cur.execute(DESTROY_SQL, args)
    await cur.execute(TOMBSTONE_SQL, (at, reason, *args))


async def subjects_with_keys_before(cur: psycopg.AsyncCursor, period: str) -> list[str]:
    """Subjects holding a monthly key of ``period`` or earlier (``YYYY-MM``)."""
    await cur.execute("SELECT DISTINCT subject_id FROM keystore.data_keys"
                      " WHERE period <> '' AND period <= %s ORDER BY 1", (period,))
    return [row[0] for row in await cur.fetchall()]


async def unwrapped_keys_in(cur: psycopg.AsyncCursor, master: bytes, refs: Iterable[KeyRef]
                            ) -> tuple[dict[tuple[KeyRef, int], bytes], int]:
    """Every version of the given keys, unwrapped; and how many did not unwrap (skipped)."""
    if not await send_wrapped_keys(cur, refs):
        return {}, 0
    return unwrap_rows(master, await cur.fetchall())


async def send_wrapped_keys(cur: psycopg.AsyncCursor, refs: Iterable[KeyRef]) -> bool:
    """Send the query of every version of the given keys, wrapped (read its rows with
    `unwrap_rows`); False when there is no key to ask for (nothing sent). Apart from
    `unwrapped_keys_in`, for a batch that sends its reads before its writes."""
    refs = sorted(set(refs), key=_ref_order)  # KeyRef's order, compared at C speed
    if not refs:
        return False
    await cur.execute(_SELECT_SQL, ([r.subject_id for r in refs], [r.category for r in refs],
                                    [r.period for r in refs]))
    return True


def unwrap_rows(master: bytes, rows: Iterable[tuple[Any, ...]]
                ) -> tuple[dict[tuple[KeyRef, int], bytes], int]:
    """The keys of `send_wrapped_keys`'s rows, unwrapped; and how many did not unwrap."""
    keys: dict[tuple[KeyRef, int], bytes] = {}
    failed = 0
    for subject, category, period, version, wrapped in rows:
        ref = KeyRef(subject, category, period)
        try:
            keys[(ref, version)] = unwrap_key(master, ref.key_id(version), bytes(wrapped))
        except MasterKeyError:
            failed += 1
    return keys, failed

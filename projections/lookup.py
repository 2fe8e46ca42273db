"""The keyed lookup index in PostgreSQL: written by the processors, read by compliance.

`make_hook(master_key)` is a projection hook (see `projections.writer.apply_batch`): for each
applied ``AccountCreated`` / ``AccountUpdated`` it opens the sealed ``email`` and ``phone``
leaves, and nothing else, with the subject's contact key unwrapped inside the batch transaction
(`events.keystore.unwrapped_keys_in`), holding the subject's key lock until the batch commits
(`events.keystore.share_subject_locks`), and stores only their keyed hashes
(`processors.rules.lookup`). A value that does not open (key destroyed, subject erased) leaves
no row. `forget_in` deletes a subject's rows; the erasure code calls it in the transaction
that destroys the subject's contact key, after destroying it, so the index never names a
subject whose contact data is gone. The table is emptied and refilled by `registre rebuild`
(``RESET_SQL``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psycopg
import structlog

from events.catalogue import Catalogue, PiiField, load_catalogue
from events.codec import Record, lookup_from, open_field
from events.keys import KeyRef
from events.keystore import share_subject_locks, unwrapped_keys_in
from processors.rules.lookup import KINDS, NotLookupValue, digest, lookup_key
from projections.writer import Hook, Outcome

log = structlog.get_logger("registre.lookup")

RESET_SQL: tuple[str, ...] = ("DELETE FROM projections.contact_lookup",)
SOURCES = ("AccountCreated", "AccountUpdated")
_DELETE_SQL = """
DELETE FROM projections.contact_lookup WHERE (subject_id, kind) IN
    (SELECT * FROM unnest(%b::text[], %b::text[]))
"""
_INSERT_SQL = """
INSERT INTO projections.contact_lookup (subject_id, kind, digest)
SELECT * FROM unnest(%b::text[], %b::text[], %b::bytea[])
"""
FIND_SQL = ("SELECT subject_id FROM projections.contact_lookup WHERE digest = %s AND kind = %s"
            " ORDER BY subject_id")


def contact_fields(catalogue: Catalogue) -> dict[tuple[str, str], PiiField]:
    """(event type, kind) -> the personal leaf holding it."""
    return {(t, f.path[-1]): f for t in SOURCES for f in catalogue.types[t].pii
            if len(f.path) == 2 and f.path[-1] in KINDS}


def _contact_ref(record: Record) -> KeyRef:
    return KeyRef(record.subject_id, "contact", "")


def entries(records: Iterable[Record], opened: dict[tuple[str, str], str | None]
            ) -> dict[tuple[str, str], str | None]:
    """(subject, kind) -> the value it holds after these records (None: no row).

    ``opened`` maps (event id, kind) to the decrypted value (None where it did not open).
    An AccountCreated sets both kinds (a missing phone means none); an AccountUpdated changes
    only the kinds it carries.
    """
    state: dict[tuple[str, str], str | None] = {}
    for r in records:
        for kind in KINDS:
            key = (r.event_id, kind)
            if key in opened:
                state[(r.subject_id, kind)] = opened[key]
            elif r.type == "AccountCreated":
                state[(r.subject_id, kind)] = None
    return state


def contact_refs(records: Iterable[Record]) -> set[KeyRef]:
    """The contact keys the lookup sources among ``records`` were sealed with."""
    return {_contact_ref(r) for r in records if r.type in SOURCES}


def opened_values(records: Iterable[Record], keys: Mapping[tuple[KeyRef, int], bytes],
                  fields: Mapping[tuple[str, str], PiiField]) -> dict[tuple[str, str], str | None]:
    """(event id, kind) -> the email or phone each lookup source carries, opened with the
    contact keys that exist (None where it does not open)."""
    opener = lookup_from(keys)
    opened: dict[tuple[str, str], str | None] = {}
    for r in records:
        if r.type not in SOURCES:
            continue
        for kind in KINDS:
            sealed = r.data.get(kind)
            if sealed is not None:
                opened[(r.event_id, kind)] = open_field(
                    r.type, r.event_id, r.subject_id, r.occurred_at, fields[(r.type, kind)],
                    sealed, opener)
    return opened


def digest_rows(hmac_key: bytes, state: Mapping[tuple[str, str], str | None]
                ) -> list[tuple[str, str, bytes]]:
    """(subject, kind, digest) of every entry that holds a value, in (subject, kind) order."""
    rows = []
    for subject, kind in sorted(state):
        value = state[(subject, kind)]
        if value is None:
            continue
        try:
            rows.append((subject, kind, digest(hmac_key, kind, value)))
        except NotLookupValue:  # validated at publish: only a very old event could be odd
            continue
    return rows


def make_hook(master_key: bytes, catalogue: Catalogue | None = None) -> Hook:
    """The lookup hook for ``apply_batch``: ``async (cursor, outcome) -> None``."""
    fields = contact_fields(catalogue or load_catalogue())
    hmac_key = lookup_key(master_key)

    # The contact keys are read under their subjects' key locks (shared) until the batch
    # commits: a sweep or a retried erasure that destroys one (and the subject's index rows
    # with it, afterwards) waits for the batch and then deletes the rows it wrote; one that
    # destroyed it first makes the batch wait, then read no key and write no row. Read after
    # the fold (not a `ReadingHook`), so that the locks are held for as short a time as can be.
    async def lookup_hook(cur: psycopg.AsyncCursor, outcome: Outcome) -> None:
        records = [r for _, r in outcome.applied if r.type in SOURCES]
        if not records:
            return
        refs = contact_refs(records)
        await share_subject_locks(cur, (r.subject_id for r in refs))
        keys, failed = await unwrapped_keys_in(cur, master_key, refs)
        if failed:
            log.warning("contact keys do not unwrap; not indexed", keys=failed)
        state = entries(records, opened_values(records, keys, fields))
        await _write(cur, hmac_key, state)

    return lookup_hook


async def _write(cur: psycopg.AsyncCursor, hmac_key: bytes,
                 state: dict[tuple[str, str], str | None]) -> None:
    pairs = sorted(state)
    await cur.execute(_DELETE_SQL, ([s for s, _ in pairs], [k for _, k in pairs]))
    rows = digest_rows(hmac_key, state)
    if rows:
        await cur.execute(_INSERT_SQL, ([r[0] for r in rows], [r[1] for r in rows],
                                        [r[2] for r in rows]))


async def forget_in(cur: psycopg.AsyncCursor, subject_id: str) -> int:
    """Delete the subject's rows (in the caller's transaction); how many there were."""
    await cur.execute("DELETE FROM projections.contact_lookup WHERE subject_id = %s",
                      (subject_id,))
    return cur.rowcount


def find(conn: psycopg.Connection, master_key: bytes, kind: str, value: str) -> list[str]:
    """The subjects whose current ``kind`` is ``value`` (normalised and hashed here)."""
    return [row[0] for row in conn.execute(
        FIND_SQL, (digest(lookup_key(master_key), kind, value), kind)).fetchall()]

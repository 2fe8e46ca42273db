"""PostgreSQL side of tamper evidence: checkpoints and the signing key (schema ``integrity``).

Every function works in the caller's connection and transaction and never commits: the
processors write their checkpoints in the same transaction as the batch they apply. Each
exists for a sync ``psycopg.Connection`` (or ``Cursor``) and, prefixed with ``a``, for an
``AsyncConnection`` (or ``AsyncCursor``, as the batch hooks receive).

The signing key lives outside PostgreSQL, not wrapped by the master key (`events.crypto.
load_signing_key`); an older registre kept it here wrapped, and `legacy_signing_key` reads it
once so that it can be moved out. Schema: ``projections/migrations/005_integrity.sql``.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)

from events.crypto import MasterKeyError
from processors.rules.integrity import Chain, ChainRecord, Checkpoint

_COLUMNS = 'topic, "partition", "offset", chain_hash, signed_at, signature'
_INSERT = f"INSERT INTO integrity.checkpoints ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
_SELECT = f'SELECT {_COLUMNS} FROM integrity.checkpoints WHERE topic = %s ORDER BY "partition",' \
          ' "offset"'
_LATEST = (f'SELECT DISTINCT ON ("partition") {_COLUMNS} FROM integrity.checkpoints'
           ' WHERE topic = %s AND (%s::int[] IS NULL OR "partition" = ANY(%s::int[]))'
           ' ORDER BY "partition", "offset" DESC')
# the checkpoints covering offsets lo..hi of a partition: from lo to the first at or after hi
_COVERING = """
WITH last AS (SELECT min("offset") AS o FROM integrity.checkpoints
              WHERE topic = %(t)s AND "partition" = %(p)s AND "offset" >= %(hi)s)
SELECT c."offset", c.signed_at FROM integrity.checkpoints c, last
WHERE c.topic = %(t)s AND c."partition" = %(p)s AND c."offset" >= %(lo)s
  AND (last.o IS NULL OR c."offset" <= last.o)
ORDER BY c."offset"
"""
_KEY_SELECT = "SELECT public_key, wrapped_private FROM integrity.signing_key WHERE id = 1"
_KEY_INSERT = ("INSERT INTO integrity.signing_key (id, algorithm, public_key, wrapped_private)"
               " VALUES (1, 'ed25519', %s, %s) ON CONFLICT (id) DO NOTHING")
_KEY_AAD = b"registre.integrity.signing-key.v1\x00"

Sync = psycopg.Connection | psycopg.Cursor
Async = psycopg.AsyncConnection | psycopg.AsyncCursor


class SigningKeyError(MasterKeyError):
    """The stored signing key does not unwrap with this master key, or was altered."""


# --- cursors in the caller's transaction ---------------------------------------------------


@contextmanager
def _cursor(conn: Sync) -> Iterator[psycopg.Cursor]:
    if isinstance(conn, psycopg.Cursor):
        yield conn
    else:
        with conn.cursor() as cur:
            yield cur


@asynccontextmanager
async def _acursor(conn: Async) -> AsyncIterator[psycopg.AsyncCursor]:
    if isinstance(conn, psycopg.AsyncCursor):
        yield conn
    else:
        async with conn.cursor() as cur:
            yield cur


def _row(cp: Checkpoint) -> tuple:
    return (cp.topic, cp.partition, cp.offset, cp.chain_hash, cp.signed_at, cp.signature)


def _checkpoint(row: Sequence) -> Checkpoint:
    topic, partition, offset, chain, signed_at, signature = row
    return Checkpoint(topic, partition, offset, bytes(chain), signed_at, bytes(signature))


# --- checkpoints -------------------------------------------------------------------------


async def awrite_checkpoints(conn: Async, checkpoints: Iterable[Checkpoint]) -> int:
    rows = [_row(cp) for cp in checkpoints if cp is not None]
    if rows:
        async with _acursor(conn) as cur:
            await cur.executemany(_INSERT, rows)
    return len(rows)


def read_checkpoints(conn: Sync, topic: str) -> list[Checkpoint]:
    """Every checkpoint of ``topic``, by partition and offset."""
    with _cursor(conn) as cur:
        cur.execute(_SELECT, (topic,))
        return [_checkpoint(r) for r in cur.fetchall()]


async def alatest_checkpoints(
    conn: Async, topic: str, partitions: Iterable[int] | None = None
) -> dict[int, Checkpoint]:
    parts = None if partitions is None else sorted(set(partitions))
    async with _acursor(conn) as cur:
        await cur.execute(_LATEST, (topic, parts, parts))
        return {r[1]: _checkpoint(r) for r in await cur.fetchall()}


async def send_latest_checkpoints(cur: psycopg.AsyncCursor, topic: str,
                                  partitions: Iterable[int]) -> None:
    """Send the query of the latest checkpoint of each partition (its rows: `latest_from`)."""
    parts = sorted(set(partitions))
    await cur.execute(_LATEST, (topic, parts, parts))


def latest_from(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[str, int], Checkpoint]:
    """`send_latest_checkpoints`'s rows as heads for `achain_batch`."""
    return {(r[0], r[1]): _checkpoint(r) for r in rows}


def _chain(
    items: Sequence[ChainRecord], heads: dict[tuple[str, int], Checkpoint],
    private_key: Ed25519PrivateKey, signed_at: datetime | None = None,
) -> list[Checkpoint]:
    chains: dict[tuple[str, int], Chain] = {}
    for item in items:
        key = (item.topic, item.partition)
        chain = chains.get(key)
        if chain is None:
            chain = chains[key] = Chain.resume(item.topic, item.partition, heads.get(key))
        chain.add(item)
    out = []
    for key in sorted(chains):
        cp = chains[key].checkpoint(private_key, signed_at)
        if cp is not None:
            out.append(cp)
    return out


def _partitions(items: Sequence[ChainRecord]) -> dict[str, set[int]]:
    wanted: dict[str, set[int]] = {}
    for item in items:
        wanted.setdefault(item.topic, set()).add(item.partition)
    return wanted


async def achain_batch(
    conn: Async, items: Sequence[ChainRecord], private_key: Ed25519PrivateKey,
    signed_at: datetime | None = None, heads: dict[tuple[str, int], Checkpoint] | None = None,
) -> list[Checkpoint]:
    """``chain_batch`` on an AsyncConnection or AsyncCursor; ``heads``, the latest checkpoints
    of the items' partitions when they were read before (`send_latest_checkpoints`)."""
    if heads is None:
        heads = {}
        for topic, parts in _partitions(items).items():
            for p, cp in (await alatest_checkpoints(conn, topic, parts)).items():
                heads[(topic, p)] = cp
    cps = _chain(items, heads, private_key, signed_at)
    await awrite_checkpoints(conn, cps)
    return cps


async def arrivals(conn: Async, records: Sequence[ChainRecord]) -> dict[tuple[int, int], datetime]:
    """When the ledger first applied each record: the signing instant of the checkpoint that
    covers it (the processors sign each batch's checkpoint at the batch's own clock).

    Records no checkpoint covers yet are left out. One query per partition of the batch.
    """
    out: dict[tuple[int, int], datetime] = {}
    by_partition: dict[tuple[str, int], list[int]] = {}
    for r in records:
        by_partition.setdefault((r.topic, r.partition), []).append(r.offset)
    async with _acursor(conn) as cur:
        for (topic, partition), offsets in by_partition.items():
            await cur.execute(_COVERING, {"t": topic, "p": partition, "lo": min(offsets),
                                          "hi": max(offsets)})
            covering = await cur.fetchall()
            ends, instants = [o for o, _ in covering], [at for _, at in covering]
            for offset in offsets:
                at = covering_instant(ends, instants, offset)
                if at is not None:
                    out[(partition, offset)] = at
    return out


def covering_instant(ends: Sequence[int], instants: Sequence[datetime],
                     offset: int) -> datetime | None:
    """The signing instant of the first checkpoint (last offsets ``ends``, ascending) that
    covers ``offset``; None when none does yet."""
    i = bisect.bisect_left(ends, offset)
    return instants[i] if i < len(ends) else None


async def apartition_checkpoints(conn: Async, topic: str, partition: int
                                 ) -> tuple[list[int], list[datetime]]:
    """(last offsets, signing instants) of every checkpoint of one partition, by offset: what
    `covering_instant` dates a whole partition's records with (a rebuild)."""
    async with _acursor(conn) as cur:
        await cur.execute('SELECT "offset", signed_at FROM integrity.checkpoints'
                          ' WHERE topic = %s AND "partition" = %s ORDER BY "offset"',
                          (topic, partition))
        rows = await cur.fetchall()
    return [o for o, _ in rows], [at for _, at in rows]


# --- the signing key -----------------------------------------------------------------------


def _aead(master_key: bytes) -> AESGCM:
    if len(master_key) != 32:
        raise MasterKeyError("the master key must be 32 bytes (AES-256)")
    return AESGCM(master_key)


def _unwrap(master_key: bytes, public: bytes, wrapped: bytes) -> Ed25519PrivateKey:
    aead = _aead(master_key)
    try:
        raw = aead.decrypt(wrapped[:12], wrapped[12:], _KEY_AAD + public)
        key = Ed25519PrivateKey.from_private_bytes(raw)
    except (InvalidTag, ValueError) as exc:
        raise SigningKeyError(
            "the integrity signing key does not unwrap with this master key"
            " (wrong master key, or the stored key was altered)"
        ) from exc
    if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != public:
        raise SigningKeyError("the stored integrity public key does not match its private key")
    return key


def legacy_signing_key(conn: Sync, master_key: bytes) -> Ed25519PrivateKey | None:
    """The signing key an older registre kept in PostgreSQL wrapped by the master key, if
    any: `registre run` moves it to its own file once, before migration 009 drops the table,
    so that the checkpoints it signed still verify."""
    with _cursor(conn) as cur:
        if cur.execute("SELECT to_regclass('integrity.signing_key')").fetchone()[0] is None:
            return None
        row = cur.execute(_KEY_SELECT).fetchone()
    return None if row is None else _unwrap(master_key, bytes(row[0]), bytes(row[1]))

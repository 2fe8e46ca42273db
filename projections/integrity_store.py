"""PostgreSQL side of tamper evidence: checkpoints and the signing key (schema ``integrity``).

Every function works in the caller's connection and transaction and never commits: the
processors write their checkpoints in the same transaction as the batch they apply. Each
exists for a sync ``psycopg.Connection`` (or ``Cursor``) and, prefixed with ``a``, for an
``AsyncConnection`` (or ``AsyncCursor``, as the batch hooks receive).

The signing key is an Ed25519 key generated once. Its private half is stored only encrypted
with AES-256-GCM under the master key, the public key bound as associated data, so a public
key swapped in the table no longer unwraps. Schema: ``projections/migrations/005_integrity.sql``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
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


def _chain(
    items: Sequence[ChainRecord], heads: dict[tuple[str, int], Checkpoint],
    private_key: Ed25519PrivateKey,
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
        cp = chains[key].checkpoint(private_key)
        if cp is not None:
            out.append(cp)
    return out


def _partitions(items: Sequence[ChainRecord]) -> dict[str, set[int]]:
    wanted: dict[str, set[int]] = {}
    for item in items:
        wanted.setdefault(item.topic, set()).add(item.partition)
    return wanted


async def achain_batch(
    conn: Async, items: Sequence[ChainRecord], private_key: Ed25519PrivateKey
) -> list[Checkpoint]:
    """``chain_batch`` on an AsyncConnection or AsyncCursor."""
    heads: dict[tuple[str, int], Checkpoint] = {}
    for topic, parts in _partitions(items).items():
        for p, cp in (await alatest_checkpoints(conn, topic, parts)).items():
            heads[(topic, p)] = cp
    cps = _chain(items, heads, private_key)
    await awrite_checkpoints(conn, cps)
    return cps


# --- the signing key -----------------------------------------------------------------------


def _aead(master_key: bytes) -> AESGCM:
    if len(master_key) != 32:
        raise MasterKeyError("the master key must be 32 bytes (AES-256)")
    return AESGCM(master_key)


def _wrap(master_key: bytes, private_key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    nonce = os.urandom(12)
    return public, nonce + _aead(master_key).encrypt(nonce, raw, _KEY_AAD + public)


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


def _new_key(master_key: bytes) -> tuple[bytes, bytes]:
    return _wrap(master_key, Ed25519PrivateKey.generate())


async def aload_or_create_signing_key(conn: Async, master_key: bytes) -> Ed25519PrivateKey:
    async with _acursor(conn) as cur:
        row = await (await cur.execute(_KEY_SELECT)).fetchone()
        if row is None:
            public, wrapped = _new_key(master_key)
            await cur.execute(_KEY_INSERT, (public, wrapped))
            row = await (await cur.execute(_KEY_SELECT)).fetchone()
    return _unwrap(master_key, bytes(row[0]), bytes(row[1]))


def load_public_key(conn: Sync, master_key: bytes | None) -> Ed25519PublicKey | None:
    """The verification key; None when no key was ever created.

    With ``master_key`` it is trusted: derived from the private key, which must unwrap
    (``SigningKeyError`` otherwise). Without, it is the stored clear copy, to be compared
    with a pinned value by an auditor who has no master key.
    """
    with _cursor(conn) as cur:
        row = cur.execute(_KEY_SELECT).fetchone()
    if row is None:
        return None
    if master_key is None:
        return Ed25519PublicKey.from_public_bytes(bytes(row[0]))
    return _unwrap(master_key, bytes(row[0]), bytes(row[1])).public_key()



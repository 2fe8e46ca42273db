"""The synchronous twins of `projections.integrity_store` (and two async readers) that only
tests use: they check that the processors' async code and a plain connection agree."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from processors.rules.integrity import ChainRecord, Checkpoint
from projections.integrity_store import (
    _INSERT,
    _KEY_INSERT,
    _KEY_SELECT,
    _LATEST,
    _SELECT,
    Async,
    Sync,
    _acursor,
    _chain,
    _checkpoint,
    _cursor,
    _new_key,
    _partitions,
    _row,
    _unwrap,
)


def write_checkpoints(conn: Sync, checkpoints: Iterable[Checkpoint]) -> int:
    """Insert a batch of checkpoints (no commit). A checkpoint already stored raises."""
    rows = [_row(cp) for cp in checkpoints if cp is not None]
    if rows:
        with _cursor(conn) as cur:
            cur.executemany(_INSERT, rows)
    return len(rows)


async def aread_checkpoints(conn: Async, topic: str) -> list[Checkpoint]:
    async with _acursor(conn) as cur:
        await cur.execute(_SELECT, (topic,))
        return [_checkpoint(r) for r in await cur.fetchall()]


def latest_checkpoints(
    conn: Sync, topic: str, partitions: Iterable[int] | None = None
) -> dict[int, Checkpoint]:
    """The latest checkpoint of each partition of ``topic`` (only ``partitions`` if given)."""
    parts = None if partitions is None else sorted(set(partitions))
    with _cursor(conn) as cur:
        cur.execute(_LATEST, (topic, parts, parts))
        return {r[1]: _checkpoint(r) for r in cur.fetchall()}


def chain_batch(
    conn: Sync, items: Sequence[ChainRecord], private_key: Ed25519PrivateKey
) -> list[Checkpoint]:
    """Chain a batch of records from their partitions' stored heads and store one signed
    checkpoint per partition that advanced, in the caller's transaction (no commit).

    Records at or below a partition's latest checkpoint are skipped (redeliveries), so the
    chain state is always the committed one: a rolled-back batch leaves nothing behind.
    """
    heads: dict[tuple[str, int], Checkpoint] = {}
    for topic, parts in _partitions(items).items():
        for p, cp in latest_checkpoints(conn, topic, parts).items():
            heads[(topic, p)] = cp
    cps = _chain(items, heads, private_key)
    write_checkpoints(conn, cps)
    return cps


def load_or_create_signing_key(conn: Sync, master_key: bytes) -> Ed25519PrivateKey:
    """The signing key, generated and stored (encrypted) on first use. Raises
    ``SigningKeyError`` when the stored key does not unwrap with ``master_key``."""
    with _cursor(conn) as cur:
        row = cur.execute(_KEY_SELECT).fetchone()
        if row is None:
            public, wrapped = _new_key(master_key)
            cur.execute(_KEY_INSERT, (public, wrapped))
            row = cur.execute(_KEY_SELECT).fetchone()  # ours, or a concurrent creator's
    return _unwrap(master_key, bytes(row[0]), bytes(row[1]))


async def aload_public_key(conn: Async, master_key: bytes | None) -> Ed25519PublicKey | None:
    async with _acursor(conn) as cur:
        row = await (await cur.execute(_KEY_SELECT)).fetchone()
    if row is None:
        return None
    if master_key is None:
        return Ed25519PublicKey.from_public_bytes(bytes(row[0]))
    return _unwrap(master_key, bytes(row[0]), bytes(row[1])).public_key()


"""The synchronous twins of `projections.integrity_store` (and an async reader) that only
tests use: they check that the processors' async code and a plain connection agree."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from processors.rules.integrity import ChainRecord, Checkpoint
from projections.integrity_store import (
    _INSERT,
    _LATEST,
    _SELECT,
    Async,
    Sync,
    _acursor,
    _chain,
    _checkpoint,
    _cursor,
    _partitions,
    _row,
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

"""`registre verify`: re-read the whole ledger and check it against the signed checkpoints,
and check the checkpoints of PostgreSQL against their copy in the checkpoint topic."""

from __future__ import annotations

import dataclasses

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events.catalogue import topic_name
from events.log import LogReader
from processors.rules.integrity import (
    Checkpoint,
    VerifyResult,
    chain_form,
    decode_checkpoint,
    verify_log,
)
from projections.integrity_store import read_checkpoints

Position = tuple[int, int]


def _published(bootstrap: str, topic: str) -> dict[Position, Checkpoint]:
    """The checkpoints of ``topic`` in the checkpoint topic (the copy outside PostgreSQL)."""
    out: dict[Position, Checkpoint] = {}
    with LogReader(bootstrap, topic_name("checkpoints")) as reader:
        for rec in reader.read():
            try:
                cp = decode_checkpoint(rec.value or b"")
            except (ValueError, EOFError):
                continue
            if cp.topic == topic:
                out[(cp.partition, cp.offset)] = cp
    return out


def _pending(conn: psycopg.Connection, topic: str) -> set[Position]:
    """Checkpoints stored but not published yet (still in the outbox)."""
    rows = conn.execute("SELECT value FROM projections.outbox WHERE topic = %s",
                        (topic_name("checkpoints"),)).fetchall()
    cps = [decode_checkpoint(bytes(v)) for (v,) in rows]
    return {(cp.partition, cp.offset) for cp in cps if cp.topic == topic}


def compare_copies(stored: list[Checkpoint], published: dict[Position, Checkpoint],
                   pending: set[Position], topic: str) -> VerifyResult | None:
    """A failure when PostgreSQL's checkpoints differ from the checkpoint topic's."""
    mine = {(cp.partition, cp.offset): cp for cp in stored}
    for pos in sorted(published.keys() | mine.keys()):
        theirs, ours = published.get(pos), mine.get(pos)
        if ours is None:
            why = "deleted from PostgreSQL (the checkpoint topic holds it)"
        elif theirs is None and pos not in pending:
            why = "in PostgreSQL but not in the checkpoint topic (inserted, or the copy lost)"
        elif theirs is not None and theirs != ours:
            why = "rewritten in PostgreSQL (it differs from the checkpoint topic's copy)"
        else:
            continue
        return VerifyResult(False, pos, f"{topic}[{pos[0]}] checkpoint at offset {pos[1]}: {why}",
                            0)
    return None


def verify(bootstrap: str, database_url: str, public_key: Ed25519PublicKey,
           topic: str | None = None) -> VerifyResult:
    """Recompute every partition's chain of the ledger topic from offset 0.

    ``public_key`` is the trusted verification key (from the signing key, or the file an
    auditor keeps): no key is taken from the database. The checkpoints are read before the
    log, so a checkpoint written meanwhile never looks like a truncation. A forged or altered
    checkpoint fails its signature, an altered, missing, reordered or inserted record fails
    its chain; then the checkpoints must equal their copy in the checkpoint topic, so rows
    deleted or rewritten in PostgreSQL fail too. Either way ``ok`` is False and
    ``first_bad`` names (partition, offset).
    """
    topic = topic or topic_name("ledger")
    with psycopg.connect(database_url) as conn:
        conn.read_only = True
        stored = read_checkpoints(conn, topic)
        pending = _pending(conn, topic)
    with LogReader(bootstrap, topic) as reader:
        records = (chain_form(r) for r in reader.read())
        result = verify_log(records, stored, public_key, topic=topic)
    if not result.ok:
        return result
    failed = compare_copies(stored, _published(bootstrap, topic), pending, topic)
    return result if failed is None else dataclasses.replace(
        failed, records_checked=result.records_checked,
        checkpoints_checked=result.checkpoints_checked, partitions=result.partitions)


def verify_document(bootstrap: str, database_url: str, public_key: Ed25519PublicKey) -> dict:
    """`registre verify --json`: the result as one document."""
    result = verify(bootstrap, database_url, public_key)
    first_bad = (None if result.first_bad is None else
                 {"partition": result.first_bad[0], "offset": result.first_bad[1]})
    return {"ok": result.ok, "first_bad": first_bad, "reason": result.reason,
            "records_checked": result.records_checked,
            "checkpoints_checked": result.checkpoints_checked,
            "unchecked_tail": result.unchecked_tail, "partitions": result.partitions}

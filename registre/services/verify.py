"""`registre verify`: re-read the whole ledger and check it against the signed checkpoints."""

from __future__ import annotations

import psycopg

from events.catalogue import topic_name
from events.log import LogReader
from processors.rules.integrity import VerifyResult, chain_form, verify_log
from projections.integrity_store import SigningKeyError, load_public_key, read_checkpoints


def verify(
    bootstrap: str, database_url: str, master_key: bytes, topic: str | None = None
) -> VerifyResult:
    """Recompute every partition's chain of the ledger topic from offset 0.

    The checkpoints are read before the log, so a checkpoint written meanwhile never looks
    like a truncation. The public key is trusted only as derived from the private key, which
    must unwrap with ``master_key``: a key swapped in the table fails here. A forged or
    altered checkpoint fails its signature, an altered, missing, reordered or inserted record
    fails its chain; either way ``ok`` is False and ``first_bad`` names (partition, offset).
    """
    topic = topic or topic_name("ledger")
    with psycopg.connect(database_url) as conn:
        conn.read_only = True
        try:
            public = load_public_key(conn, master_key)
        except SigningKeyError as exc:
            return VerifyResult(False, None, f"{topic}: {exc}", 0)
        checkpoints = read_checkpoints(conn, topic)
    with LogReader(bootstrap, topic) as reader:
        records = (chain_form(r) for r in reader.read())
        return verify_log(records, checkpoints, public, topic=topic)


def verify_document(bootstrap: str, database_url: str, master_key: bytes) -> dict:
    """`registre verify --json`: the result as one document."""
    result = verify(bootstrap, database_url, master_key)
    first_bad = (None if result.first_bad is None else
                 {"partition": result.first_bad[0], "offset": result.first_bad[1]})
    return {"ok": result.ok, "first_bad": first_bad, "reason": result.reason,
            "records_checked": result.records_checked,
            "checkpoints_checked": result.checkpoints_checked,
            "unchecked_tail": result.unchecked_tail, "partitions": result.partitions}

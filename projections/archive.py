"""Republishing the archive into an empty embedded broker, so the ledger survives restarts.

The embedded broker keeps its log in memory only. Every record is archived in PostgreSQL in
the same transaction that applies it; on start, an empty broker gets the archive back in
order, partition by partition, and each record must land at the offset it had before.
"""

from __future__ import annotations

import base64

import psycopg
import structlog
from kafka import KafkaProducer

from events.catalogue import topic_name
from events.log import LogReader
from processors.rules.integrity import encode_checkpoint
from projections.integrity_store import read_checkpoints
from projections.positions import applied_positions

log = structlog.get_logger("registre.archive")


class LogShorter(Exception):
    """The broker's log is shorter than what was applied and cannot be restored."""


def archived_ends(conn: psycopg.Connection, topic: str) -> dict[int, int]:
    rows = conn.execute(
        "SELECT partition, max(\"offset\") + 1 FROM projections.archive WHERE topic = %s"
        " GROUP BY partition",
        (topic,),
    ).fetchall()
    return {p: n for p, n in rows}


def restore_if_needed(bootstrap: str, database_url: str, can_restore: bool) -> int:
    """Republish the archive into an empty log; refuse a log shorter than the projections.

    Returns the number of records republished (0 when nothing was needed). An empty
    checkpoint topic gets the stored checkpoints back too.
    """
    topic = topic_name("ledger")
    with LogReader(bootstrap) as reader:
        ends = reader.end_offsets()
    with psycopg.connect(database_url) as conn:
        applied = applied_positions(conn)
        archived = archived_ends(conn, topic)
        empty = all(e == 0 for e in ends.values())
        if can_restore:
            _restore_checkpoints(bootstrap, conn)
        if can_restore and empty and archived:
            return _republish(bootstrap, conn, topic, archived)
    short = {p: (ends.get(p, 0), n) for p, n in applied.items() if ends.get(p, 0) < n}
    if short:
        where = ", ".join(f"partition {p}: log ends at {e}, applied up to {n}"
                          for p, (e, n) in sorted(short.items()))
        raise LogShorter(f"the broker's log is shorter than the projections ({where}); "
                         "refusing to reprocess or skip: restore the log or run `registre rebuild`")
    return 0


def _restore_checkpoints(bootstrap: str, conn: psycopg.Connection) -> int:
    """The embedded broker forgets its topics when it stops: give an empty checkpoint topic the
    checkpoints of PostgreSQL again (on Apache Kafka the topic is durable and never empty)."""
    with LogReader(bootstrap, topic_name("checkpoints")) as reader:
        if any(reader.end_offsets().values()):
            return 0
    stored = read_checkpoints(conn, topic_name("ledger"))
    if not stored:
        return 0
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             client_id="registre-restore")
    try:
        futures = [producer.send(topic_name("checkpoints"),
                                 key=f"{cp.topic}/{cp.partition}".encode(),
                                 value=encode_checkpoint(cp)) for cp in stored]
        producer.flush()
        for fut in futures:
            fut.get(timeout=30)
    finally:
        producer.close()
    log.info("checkpoints republished", checkpoints=len(stored))
    return len(stored)


def _republish(bootstrap: str, conn: psycopg.Connection, topic: str,
               archived: dict[int, int]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=20, max_request_size=4 << 20, client_id="registre-restore")
    count = 0
    try:
        for partition in sorted(archived):
            futures = []
            with conn.cursor(name="archive_rows") as cur:
                cur.itersize = 5000
                cur.execute(
                    "SELECT \"offset\", key, headers, value FROM projections.archive"
                    " WHERE topic = %s AND partition = %s ORDER BY \"offset\"",
                    (topic, partition),
                )
                for offset, key, headers, value in cur:
                    hdrs = [(k, base64.b64decode(v)) for k, v in headers]
                    fut = producer.send(topic, key=bytes(key) if key else None,
                                        value=bytes(value) if value is not None else b"",
                                        headers=hdrs, partition=partition)
                    futures.append((offset, fut))
            producer.flush()
            for expected, fut in futures:
                got = fut.get(timeout=30).offset
                if got != expected:
                    raise LogShorter(f"archive restore of partition {partition}: record"
                                     f" {expected} landed at offset {got}")
            count += len(futures)
    finally:
        producer.close()
    log.info("archive republished", records=count, partitions=len(archived))
    return count

"""How far the projections have got, compared with the end of the log."""

from __future__ import annotations

import psycopg
import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from events import journal
from events.catalogue import topic_name
from events.log import LogReader

log = structlog.get_logger("registre.positions")


def applied_positions(conn: psycopg.Connection, consumer: str = "ledger",
                      topic: str | None = None) -> dict[int, int]:
    rows = conn.execute(
        "SELECT partition, next_offset FROM projections.offsets WHERE consumer = %s"
        " AND topic = %s",
        (consumer, topic or topic_name("ledger")),
    ).fetchall()
    return {p: o for p, o in rows}


def lag(bootstrap: str, database_url: str) -> dict[int, int]:
    """Records in the log not yet applied, per partition (negative: the log is shorter)."""
    ends = _log_ends(bootstrap)
    with psycopg.connect(database_url) as conn:
        return _behind(ends, applied_positions(conn))


def backlog(bootstrap: str, database_url: str) -> int:
    """Records not applied yet, ledger facts not published yet, and records the journal has
    not handed to the broker yet or must hand again (the broker lost them): 0 means settled.

    The log's ends are read first: a record the relay places meanwhile lands at or beyond
    them, so it is counted (perhaps twice), never missed."""
    ends = _log_ends(bootstrap)
    with psycopg.connect(database_url) as conn:
        behind = sum(n for n in _behind(ends, applied_positions(conn)).values() if n > 0)
        pending = conn.execute("SELECT count(*) FROM projections.outbox").fetchone()[0]
        pending += journal.pending(conn, topic_name("ledger"), ends)
    return behind + pending


def _behind(ends: dict[int, int], applied: dict[int, int]) -> dict[int, int]:
    return {p: end - applied.get(p, 0) for p, end in ends.items()}


def _log_ends(bootstrap: str) -> dict[int, int]:
    with LogReader(bootstrap) as reader:
        return reader.end_offsets()


def align_group(bootstrap: str, database_url: str, group: str) -> dict[int, int]:
    """Commit the projections' positions as the processors' consumer-group offsets.

    Run before any worker joins: workers then resume exactly where PostgreSQL says, not where
    Kafka's committed offsets say. That matters when the broker lost its group offsets (the
    embedded broker after a restart: no re-reading the whole log) and when the database was
    restored from an older backup (the events it lacks are applied again, not skipped).
    Returns what was committed ({} when the group is active, which refuses the commit).
    """
    with psycopg.connect(database_url) as conn:
        applied = applied_positions(conn)
    if not applied:
        return {}
    topic = topic_name("ledger")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, client_id="registre-align",
                             bootstrap_timeout_ms=5_000, request_timeout_ms=10_000)
    try:
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                   for p, o in applied.items()}
        consumer.assign(list(offsets))
        try:
            consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("consumer group not aligned on the projections", group=group,
                        reason=type(exc).__name__)
            return {}
    finally:
        consumer.close()
    return applied

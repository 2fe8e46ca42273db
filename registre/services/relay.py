"""The relay: hands the journal to the broker, in order, and forgets what was applied.

One relay runs per embedded stack (`registre run` starts and supervises it). On start it asks
the broker where each partition ends and hands again every record relayed beyond that (a
broker that restarted empty got only the archive back); then it loops: claim the next records,
produce them with ``acks=all`` and idempotence (one producer keeps their order), note where
each landed, and forget those the processors have applied. It waits for the journal's NOTIFY
between rounds. A broker or database that does not answer is retried, never skipped.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

import psycopg
import structlog
from kafka import KafkaProducer
from kafka.cluster import ClusterMetadata
from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner, murmur2

from events.catalogue import topic_name
from events.codec import MAX_MESSAGE
from events.journal import claim, forget_done, mark_relayed, reset_lost
from events.log import LogReader

log = structlog.get_logger("registre.relay")
BATCH = 2000
RETRY_SECONDS = 1.0


class KeptHashPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (``murmur2(key) & 0x7fffffff`` modulo the partition
    count, indexing the sorted partition ids, as `registre.services.replay.partition_for`
    reads it back), with each key's hash and each topic's sorted ids kept: a subject's events
    share its key, and the default's pure-Python murmur2 and sort cost ~4 us a record."""

    def __init__(self, keys: int = 100_000) -> None:
        self._hash = lru_cache(maxsize=keys)(murmur2)
        self._sorted: dict[tuple[str, int], list[int]] = {}

    def partition(self, topic: str, key: object, serialized_key: bytes | None, value: object,
                  serialized_value: bytes | None, cluster: ClusterMetadata) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:  # as the default does then
            return super().partition(topic, key, serialized_key, value, serialized_value,
                                     cluster)
        ids = self._sorted.get((topic, len(partitions)))
        if ids is None:
            ids = self._sorted[(topic, len(partitions))] = sorted(partitions)
        return ids[(self._hash(serialized_key) & 0x7FFFFFFF) % len(ids)]


def producer_for(kafka: str) -> KafkaProducer:
    """The relay's producer: acks=all and idempotence, so one producer keeps the order."""
    return KafkaProducer(bootstrap_servers=kafka, client_id="registre-relay", acks="all",
                         enable_idempotence=True, linger_ms=2, request_timeout_ms=10_000,
                         max_request_size=2 * MAX_MESSAGE, partitioner=KeptHashPartitioner())


def hand_on(conn: psycopg.Connection, producer: KafkaProducer, limit: int = BATCH) -> int:
    """One round: the next records to the broker, their positions noted. How many."""
    rows = claim(conn, limit)
    if not rows:
        return 0
    futures = [(row_id, producer.send(topic, key=key or None, value=value, headers=headers))
               for row_id, topic, key, value, headers in rows]
    producer.flush()
    placed = []
    for row_id, fut in futures:
        meta = fut.get(timeout=30)
        placed.append((row_id, meta.partition, meta.offset))
    mark_relayed(conn, placed)
    return len(rows)


def recover(kafka: str, conn: psycopg.Connection) -> int:
    """Hand again what the broker lost: records relayed at or beyond a partition's end."""
    with LogReader(kafka) as reader:
        ends = reader.end_offsets()
    again = reset_lost(conn, topic_name("ledger"), ends)
    if again:
        log.warning("records the broker lost are handed again", records=again)
    return again


def run(kafka: str, database_url: str, stop: threading.Event | None = None) -> None:
    """Relay until ``stop`` is set (or forever); retries what fails."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            _relay(kafka, database_url, stop)
        except (KafkaError, psycopg.OperationalError) as exc:
            log.warning("relay interrupted, retrying", error=type(exc).__name__)
            stop.wait(RETRY_SECONDS)


def _relay(kafka: str, database_url: str, stop: threading.Event) -> None:
    producer = producer_for(kafka)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("LISTEN journal")
            recover(kafka, conn)
            ledger, forgotten_at = topic_name("ledger"), 0.0
            while not stop.is_set():
                moved = hand_on(conn, producer)
                if time.monotonic() - forgotten_at > 0.5:
                    forget_done(conn, ledger)
                    forgotten_at = time.monotonic()
                if not moved:
                    for _ in conn.notifies(timeout=0.2, stop_after=1):
                        pass
    finally:
        producer.close(timeout=5)

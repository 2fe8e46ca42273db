"""Reading the ledger back, with manual partition assignment (no consumer group).

kafka-python's consumer groups never finish joining on the embedded broker, and replay and
audit need no group anyway. The embedded broker (Tansu) also reports a partition's end offset
as the base offset of its last batch + 1; `end_offsets` reads that last batch to find the
real end, which is exact on Apache Kafka too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import NamedTuple

from kafka import KafkaConsumer, TopicPartition

from events.catalogue import topic_name


class LogRecord(NamedTuple):
    """One record as read from the log (by a Faust agent or a LogReader). A named tuple: a
    worker builds one per event, and a frozen dataclass's ``__init__`` costs ~0.7 us more."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


def _consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="registre-reader",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 << 20,
        max_partition_fetch_bytes=4 << 20,
        request_timeout_ms=15_000,
        bootstrap_timeout_ms=5_000,
    )


def partitions(consumer: KafkaConsumer, topic: str, timeout: float = 10.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic} does not exist")
        time.sleep(0.1)


class LogReader:
    """Read one topic of the log from given offsets to its end, partition by partition."""

    def __init__(self, bootstrap: str, topic: str | None = None) -> None:
        self.topic = topic or topic_name("ledger")
        self._consumer = _consumer(bootstrap)
        self.partitions = partitions(self._consumer, self.topic)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def end_offsets(self) -> dict[int, int]:
        """The offset after the last record of each partition (exact, also on Tansu)."""
        reported = self._consumer.end_offsets(self.partitions)
        out = {}
        for tp in self.partitions:
            end = reported[tp]
            if end == 0:
                out[tp.partition] = 0
                continue
            last = end - 1
            for rec in self._read(tp, last, None, stop_after_first_fetch=True):
                last = max(last, rec.offset)
            out[tp.partition] = last + 1
        return out

    def _read(
        self, tp: TopicPartition, start: int, end: int | None, stop_after_first_fetch: bool = False
    ) -> Iterator[LogRecord]:
        self._consumer.assign([tp])
        self._consumer.seek(tp, start)
        idle = 0
        while True:
            batch = self._consumer.poll(timeout_ms=500, max_records=5000).get(tp, [])
            if not batch:
                idle += 1
                if stop_after_first_fetch or end is None or idle > 20:
                    if end is not None and not stop_after_first_fetch:
                        raise TimeoutError(f"{tp.topic}[{tp.partition}] stalled before {end}")
                    return
                continue
            idle = 0
            for m in batch:
                if end is not None and m.offset >= end:
                    return
                yield LogRecord(m.topic, m.partition, m.offset, m.key, m.value,
                                tuple(m.headers or ()), m.timestamp)
            if stop_after_first_fetch:
                return
            if end is not None and batch[-1].offset + 1 >= end:
                return

    def read(
        self, start: dict[int, int] | None = None, key: bytes | None = None,
        only: list[int] | None = None,
    ) -> Iterator[LogRecord]:
        """Every record from ``start`` (default 0) to the current end, partition by partition.

        With ``key``, records of other keys are skipped before anything is decoded.
        """
        ends = self.end_offsets()
        for tp in self.partitions:
            if only is not None and tp.partition not in only:
                continue
            first = (start or {}).get(tp.partition, 0)
            if first >= ends[tp.partition]:
                continue
            for rec in self._read(tp, first, ends[tp.partition]):
                if key is None or rec.key == key:
                    yield rec


async def read_partition(bootstrap: str, partition: int, start: int, end: int,
                         topic: str | None = None, chunk: int = 5000,
                         keep: Callable[[bytes | None], bool] | None = None
                         ) -> AsyncIterator[list[LogRecord]]:
    """Records ``start`` to ``end`` (excluded) of one partition in offset order, in chunks of
    up to ``chunk``: the fast path (aiokafka, no group) of a rebuild's worker processes.
    With ``keep``, only the records whose key it keeps (a chunk may then be empty)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic or topic_name("ledger"), partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=16 << 20,
        max_partition_fetch_bytes=4 << 20, fetch_max_wait_ms=100, request_timeout_ms=30_000)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        position, idle = start, 0
        while position < end:
            got = (await consumer.getmany(tp, timeout_ms=1000, max_records=chunk)).get(tp)
            if not got:
                idle += 1
                if idle > 30:
                    raise TimeoutError(f"{tp.topic}[{partition}] stalled at {position} of {end}")
                continue
            idle = 0
            position = got[-1].offset + 1
            yield [LogRecord(m.topic, m.partition, m.offset, m.key, m.value,
                             tuple(m.headers or ()), m.timestamp) for m in got
                   if m.offset < end and (keep is None or keep(m.key))]
    finally:
        await consumer.stop()


class LogTail:
    """One aiokafka consumer over the ledger's partitions, to read ranges again and again
    without reconnecting (a rebuild catching up with the live processors)."""

    def __init__(self, bootstrap: str, topic: str | None = None) -> None:
        from aiokafka import AIOKafkaConsumer

        self.topic = topic or topic_name("ledger")
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_bytes=16 << 20,
            max_partition_fetch_bytes=4 << 20, fetch_max_wait_ms=50, request_timeout_ms=30_000)

    async def __aenter__(self) -> LogTail:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def read(self, starts: dict[int, int], ends: dict[int, int] | None = None,
                   idle_ms: int = 200) -> list[LogRecord]:
        """Records from ``starts`` to ``ends`` (excluded) by partition and offset; without
        ``ends``, as far as the log goes until nothing more arrives for ``idle_ms``."""
        from aiokafka import TopicPartition

        wanted = {p: s for p, s in starts.items() if ends is None or ends.get(p, 0) > s}
        tps = {p: TopicPartition(self.topic, p) for p in wanted}
        out: dict[int, list[LogRecord]] = {p: [] for p in wanted}
        if not tps:
            return []
        self._consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            self._consumer.seek(tp, wanted[p])
        left, idle = set(wanted), 0
        while left:
            got = await self._consumer.getmany(*(tps[p] for p in left),
                                               timeout_ms=idle_ms if ends is None else 1000)
            if not got:
                idle += 1
                if ends is None:
                    break
                if idle > 30:
                    raise TimeoutError(f"{self.topic} stalled before {ends}")
                continue
            idle = 0
            for tp, msgs in got.items():
                end = None if ends is None else ends[tp.partition]
                out[tp.partition] += [
                    LogRecord(m.topic, m.partition, m.offset, m.key, m.value,
                              tuple(m.headers or ()), m.timestamp)
                    for m in msgs if end is None or m.offset < end]
                if end is not None and msgs and msgs[-1].offset + 1 >= end:
                    left.discard(tp.partition)
        return [r for p in sorted(out) for r in out[p]]

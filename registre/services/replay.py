"""Reading one subject's history back from the log.

The subject id is the Kafka key, and the publisher leaves partitioning to kafka-python's
default partitioner: ``murmur2(key) & 0x7fffffff`` modulo the partition count, indexing the
sorted partition ids (`kafka.partitioner.default.DefaultPartitioner`). So only that partition
is read, and records of other keys are skipped before anything is decoded. A record that does
not decode, or whose key is not its subject id, is skipped as the processors dead-letter it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka.partitioner.default import murmur2

from events.catalogue import Catalogue, load_catalogue
from events.codec import DecodeError, Record, decode
from events.log import LogReader


@dataclass(frozen=True)
class Replayed:
    partition: int
    offset: int
    record: Record


def partition_for(subject_id: str, partitions: list[int]) -> int:
    """The partition the publisher's producer sends ``subject_id`` to (same hash, same order)."""
    ids = sorted(partitions)
    return ids[(murmur2(subject_id.encode()) & 0x7FFFFFFF) % len(ids)]


def subject_log(bootstrap: str, subject_id: str, topic: str | None = None,
                catalogue: Catalogue | None = None) -> list[Replayed]:
    """Every record of ``subject_id`` in the ledger, in log order, with its position."""
    catalogue = catalogue or load_catalogue()
    key = subject_id.encode()
    out = []
    with LogReader(bootstrap, topic) as reader:
        partition = partition_for(subject_id, [tp.partition for tp in reader.partitions])
        for rec in reader.read(key=key, only=[partition]):
            try:
                record = decode(rec.value or b"", catalogue)
            except DecodeError:
                continue
            if record.subject_id != subject_id:
                continue
            out.append(Replayed(rec.partition, rec.offset, record))
    return out


def subject_records(bootstrap: str, subject_id: str, topic: str | None = None,
                    catalogue: Catalogue | None = None) -> list[Record]:
    """The subject's Records in log order (what the pure folds of `processors.rules.audit` take)."""
    return [r.record for r in subject_log(bootstrap, subject_id, topic, catalogue)]

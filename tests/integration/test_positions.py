"""Workers resume where PostgreSQL says: `align_group` commits the projections' positions as
the processors' consumer-group offsets before any worker joins."""

from __future__ import annotations

import psycopg
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from events.catalogue import topic_name
from processors.app import PROCESSOR_GROUP
from projections.positions import align_group, applied_positions


def committed(broker: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=broker, group_id=PROCESSOR_GROUP,
                             enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic_name("ledger"))
        return {p: consumer.committed(TopicPartition(topic_name("ledger"), p)) for p in parts}
    finally:
        consumer.close()


def test_group_offsets_follow_the_projections_both_ways(broker: str, database_url: str) -> None:
    topic = topic_name("ledger")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO projections.offsets VALUES ('ledger', %s, 0, 7),"
                     " ('ledger', %s, 3, 2)", (topic, topic))
        positions = applied_positions(conn)
    assert align_group(broker, database_url, PROCESSOR_GROUP) == {0: 7, 3: 2}
    seen = committed(broker)
    assert seen[0] == 7 and seen[3] == 2 and seen[1] is None
    assert positions == {0: 7, 3: 2}

    # Kafka ahead of a database restored from an older backup: rewound to the database.
    consumer = KafkaConsumer(bootstrap_servers=broker, group_id=PROCESSOR_GROUP,
                             enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.commit({tp: OffsetAndMetadata(40, "", -1)})
    consumer.close()
    assert committed(broker)[0] == 40
    align_group(broker, database_url, PROCESSOR_GROUP)
    assert committed(broker)[0] == 7


def test_nothing_applied_commits_nothing(broker: str, database_url: str) -> None:
    assert align_group(broker, database_url, PROCESSOR_GROUP) == {}
    assert set(committed(broker).values()) == {None}

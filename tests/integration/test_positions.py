"""Workers resume where PostgreSQL says: `align_group` commits the projections' positions as
the processors' consumer-group offsets before any worker joins. And "settled" (`backlog`, what
`registre wait` and the drain of `registre run` wait for) counts what the broker lost."""

from __future__ import annotations

import secrets

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from events.catalogue import topic_name
from events.journal import reset_lost
from events.log import LogReader
from processors.app import PROCESSOR_GROUP
from projections.positions import align_group, applied_positions, backlog
from projections.roles import COMPLIANCE, ensure_login


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


def test_records_relayed_where_the_broker_lost_them_are_not_settled(
        broker: str, database_url: str) -> None:
    """A broker that restarted empty holds less than the journal says it was given: until the
    relay hands those records again, `backlog` counts them (it once said 0, and `registre
    wait` returned before the relay had recovered them)."""
    topic = topic_name("ledger")
    producer = KafkaProducer(bootstrap_servers=broker)
    for _ in range(2):  # partition 0 holds offsets 0 and 1, both applied
        producer.send(topic, value=b"x", partition=0).get(timeout=30)
    producer.close()
    compliance = ensure_login(database_url, COMPLIANCE, "registre_test_compliance",
                              secrets.token_urlsafe(16))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO projections.offsets VALUES ('ledger', %s, 0, 2)", (topic,))
        conn.execute(
            'INSERT INTO journal.records (topic, value, "partition", "offset") VALUES'
            " (%s, 'x', 0, 1), (%s, 'x', 0, 2), (%s, 'x', 0, 3), (%s, 'x', 5, 0)",
            (topic, topic, topic, topic))
        assert backlog(broker, compliance) == 3  # 0:2 and 0:3 lost, 5:0 lost (5 is empty)
        with LogReader(broker) as reader:  # what the relay does when it starts
            assert reset_lost(conn, topic, reader.end_offsets()) == 3
        assert backlog(broker, compliance) == 3  # to hand again: still on their way
        conn.execute('DELETE FROM journal.records WHERE "offset" IS NULL')
        assert backlog(broker, compliance) == 0  # handed, applied and forgotten

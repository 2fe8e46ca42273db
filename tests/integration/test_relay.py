"""The relay hands the journal to a real broker in rounds: each record once, in the order it
was accepted, its position noted; a record committed late (a lower id than records already
handed) is handed too."""

from __future__ import annotations

import psycopg

from events.catalogue import topic_name
from events.journal import Journal, set_gate
from events.log import LogReader
from registre.services.relay import hand_on, producer_for
from registre.services.replay import partition_for


def _append(conn: psycopg.Connection, values: list[bytes]) -> None:
    topic = topic_name("ledger")
    Journal(conn).append([(None, topic, b"subject-%d" % (i % 7), v, [("n", v)])
                          for i, v in enumerate(values)])


def test_every_record_is_handed_once_where_the_journal_says(broker: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, \
            psycopg.connect(database_url, autocommit=True) as late:
        set_gate(conn, True)
        _append(conn, [b"a%02d" % i for i in range(12)])
        with late.transaction():  # takes its ids now, commits after the next rounds
            _append(late, [b"late"])
            _append(conn, [b"b%02d" % i for i in range(9)])
            producer = producer_for(broker)
            rounds = [hand_on(conn, producer, limit=5) for _ in range(4)]
        rounds += iter(lambda: hand_on(conn, producer, limit=5), 0)
        producer.close()
        rows = conn.execute('SELECT value, "partition", "offset", key FROM journal.records'
                            " ORDER BY id").fetchall()
        placed = {bytes(v): (p, o) for v, p, o, _ in rows}
        keys = {bytes(v): bytes(k).decode() for v, _, _, k in rows}

    assert rounds == [5, 5, 5, 5, 2]  # the late record waits for its commit, not for the end
    assert None not in {o for _, o in placed.values()}
    with LogReader(broker) as reader:
        log = [(r.value, r.partition, r.offset, r.headers) for r in reader.read()]
        partitions = list(reader.end_offsets())
    assert sorted(v for v, *_ in log) == sorted(placed)  # each record once, the late one too
    assert {v: (p, o) for v, p, o, _ in log} == placed  # where the journal says it landed
    assert all(headers == (("n", v),) for v, _, _, headers in log)
    # the partition kafka-python's default partitioner gives the key: where replay reads it
    assert {v: p for v, p, _, _ in log} == {v: partition_for(keys[v], partitions) for v in keys}
    for part in {p for _, p, _, _ in log}:  # in the order accepted (the late one aside)
        values = [v for v, p, _, _ in log if p == part and v != b"late"]
        assert values == sorted(values)

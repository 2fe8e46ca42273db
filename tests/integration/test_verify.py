"""`registre.services.verify` against a real broker and PostgreSQL.

Records cannot be altered inside a Kafka broker, so a tampered log is a copy: the original
sequence, modified, re-produced into a second fresh broker, and checked against the
checkpoints that were signed for the original.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from kafka import KafkaProducer

from deploy.runtime import EmbeddedBroker
from deploy.topics import ensure_topics
from events.catalogue import topic_name
from events.codec import encode
from events.crypto import MasterKeyError, load_signing_key, public_key_pem, read_public_key
from events.log import LogReader, LogRecord
from events.model import Event
from processors.rules.integrity import Chain, chain_form, encode_checkpoint, verify_log
from projections.integrity_store import achain_batch, alatest_checkpoints, read_checkpoints
from registre.services.verify import verify
from tests.integration.integrity_twins import (
    aread_checkpoints,
    chain_batch,
    latest_checkpoints,
    write_checkpoints,
)

pytestmark = pytest.mark.integration

TOPIC = topic_name("ledger")
PARTITIONS = 6
PER_PARTITION = 16
BATCH = 4  # the "processor" checkpoints each partition every 4 records: 3, 7, 11, 15

Item = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def original_items() -> dict[int, list[Item]]:
    out: dict[int, list[Item]] = {}
    for p in range(PARTITIONS):
        items: list[Item] = []
        for i in range(PER_PARTITION):
            subject = f"acc-{p}-{i % 3}"
            event = Event(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{p}/{i}")), "ConsentGiven",
                          subject, datetime(2026, 3, 3, 9, i, tzinfo=UTC), "test",
                          {"purposes": ["marketing"], "notice_version": f"v{p}.{i}",
                           "mechanism": "api"})
            headers = [("registre-type", b"ConsentGiven"), ("n", str(i).encode())]
            items.append((subject.encode(), encode(event, {}), headers))
        out[p] = items
    out[0][5] = (b"acc-0-x", b"", [])  # empty value, no headers: survive the round trip
    return out


def produce(bootstrap: str, items: dict[int, list[Item]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=5, client_id="test-integrity")
    try:
        for p, seq in sorted(items.items()):
            futures = [producer.send(TOPIC, key=k, value=v, headers=h, partition=p)
                       for k, v, h in seq]
            producer.flush()
            assert [f.get(timeout=30).offset for f in futures] == list(range(len(seq)))
    finally:
        producer.close()


def read_log(bootstrap: str, only: list[int] | None = None) -> list[LogRecord]:
    with LogReader(bootstrap) as reader:
        return list(reader.read(only=only))


def sign_into_db(database_url: str, key: Ed25519PrivateKey, log: list[LogRecord]) -> None:
    """The processor's job: batches mixing partitions, each chained and checkpointed in its
    own transaction, the chain resumed from the database every time."""
    with psycopg.connect(database_url) as conn:
        for start in range(0, PER_PARTITION, BATCH):
            batch = [r for r in log if start <= r.offset < start + BATCH]
            with conn.transaction():
                cps = chain_batch(conn, [chain_form(r) for r in batch], key)
            assert len(cps) == len({r.partition for r in batch})


def publish_checkpoints(bootstrap: str, database_url: str) -> None:
    """The copy outside PostgreSQL, as the processors' outbox publishes it."""
    with psycopg.connect(database_url) as conn:
        stored = read_checkpoints(conn, TOPIC)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for cp in stored:
        producer.send(topic_name("checkpoints"), key=f"{cp.topic}/{cp.partition}".encode(),
                      value=encode_checkpoint(cp))
    producer.flush()
    producer.close()


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def public(signing_key: Ed25519PrivateKey) -> Ed25519PublicKey:
    """The trusted key: what `registre verify --public-key` is given."""
    return signing_key.public_key()


@pytest.fixture
def signed_log(broker: str, database_url: str, signing_key: Ed25519PrivateKey
               ) -> list[LogRecord]:
    produce(broker, original_items())
    log = read_log(broker)
    assert len(log) == PARTITIONS * PER_PARTITION
    sign_into_db(database_url, signing_key, log)
    publish_checkpoints(broker, database_url)
    return log


@pytest.fixture
def second_broker(tmp_path: Path, database_url: str) -> Iterator[str]:
    """Another broker holding the same checkpoint topic: a copy of the log to tamper with."""
    b = EmbeddedBroker(tmp_path / "tampered")
    bootstrap = b.start()
    ensure_topics(bootstrap)
    publish_checkpoints(bootstrap, database_url)
    yield bootstrap
    b.stop()


def checkpoints(database_url: str, partition: int | None = None) -> list:
    with psycopg.connect(database_url) as conn:
        cps = read_checkpoints(conn, TOPIC)
    return [c for c in cps if partition is None or c.partition == partition]


def flip(data: bytes) -> bytes:
    return data[:7] + bytes([data[7] ^ 0x80]) + data[8:]


# --- the genuine log ------------------------------------------------------------------------


def test_the_genuine_log_verifies(
    signed_log: list[LogRecord], broker: str, database_url: str, public: Ed25519PublicKey
) -> None:
    result = verify(broker, database_url, public)
    assert result.ok, result.reason
    assert result.first_bad is None
    assert result.records_checked == PARTITIONS * PER_PARTITION
    assert result.checkpoints_checked == PARTITIONS * PER_PARTITION // BATCH
    assert result.unchecked_tail == 0

    # Records published after the last checkpoint: an ok, unchecked tail.
    produce_more = {0: [(b"acc-late", b"late", [])] * 2}
    producer = KafkaProducer(bootstrap_servers=broker, acks="all")
    for k, v, h in produce_more[0]:
        producer.send(TOPIC, key=k, value=v, headers=h, partition=0)
    producer.flush()
    producer.close()
    result = verify(broker, database_url, public)
    assert result.ok, result.reason
    assert result.unchecked_tail == 2


def test_an_identical_copy_verifies(
    signed_log: list[LogRecord], second_broker: str, database_url: str, public: Ed25519PublicKey
) -> None:
    produce(second_broker, original_items())
    assert verify(second_broker, database_url, public).ok


def test_a_log_never_checkpointed_is_all_unchecked_tail(
    broker: str, database_url: str, public: Ed25519PublicKey
) -> None:
    produce(broker, {1: original_items()[1][:5]})
    result = verify(broker, database_url, public)
    assert result.ok and result.unchecked_tail == 5 and result.checkpoints_checked == 0


# --- tampered copies --------------------------------------------------------------------


def test_a_tampered_copy_fails_at_the_right_position(
    signed_log: list[LogRecord], second_broker: str, database_url: str, public: Ed25519PublicKey
) -> None:
    items = original_items()
    k, v, h = items[1][6]
    items[1][6] = (k, flip(v), h)                          # one flipped byte at 1/6
    del items[2][9]                                        # a deleted record at 2/9
    items[3][10], items[3][11] = items[3][11], items[3][10]  # two records swapped at 3/10
    items[4].insert(5, (b"acc-4-0", b"inserted", []))      # a record inserted at 4/5
    items[5] = items[5][:14]                               # truncated after 5/13
    produce(second_broker, items)

    result = verify(second_broker, database_url, public)
    assert not result.ok
    assert result.first_bad == (1, 4)  # the batch 4..7 holding the altered record
    assert f"{TOPIC}[1] offset 4" in result.reason

    expected = {0: None, 1: (1, 4), 2: (2, 8), 3: (3, 8), 4: (4, 4), 5: (5, 14)}
    for p, where in expected.items():
        log = map(chain_form, read_log(second_broker, [p]))
        got = verify_log(log, checkpoints(database_url, p), public, topic=TOPIC)
        assert got.first_bad == where, (p, got.reason)
    log = map(chain_form, read_log(second_broker, [5]))
    assert "truncated" in verify_log(log, checkpoints(database_url, 5), public,
                                     topic=TOPIC).reason


def _rechain(log: list[LogRecord], key: Ed25519PrivateKey, partition: int) -> list:
    chain = Chain(TOPIC, partition)
    out = []
    for r in log:
        if r.partition == partition:
            chain.add(r)
            if (r.offset + 1) % BATCH == 0:
                out.append(chain.checkpoint(key))
    if chain.unsigned:
        out.append(chain.checkpoint(key))
    return out


def test_an_inserted_record_under_forged_checkpoints_is_rejected(
    signed_log: list[LogRecord], second_broker: str, database_url: str, public: Ed25519PublicKey
) -> None:
    items = original_items()
    items[2].insert(6, (b"acc-2-0", b"inserted", []))
    produce(second_broker, items)
    tampered = read_log(second_broker)
    attacker = Ed25519PrivateKey.generate()
    forged = [c for c in _rechain(tampered, attacker, 2) if c.offset >= 6]  # 7, 11, 15, 16

    # The table is append-only: the genuine checkpoints cannot be replaced...
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.RaiseException):
        conn.execute('DELETE FROM integrity.checkpoints WHERE "partition" = 2')
    # ...so the attacker can only add his for the new offset, and the genuine ones fail.
    with psycopg.connect(database_url) as conn:
        write_checkpoints(conn, [c for c in forged if c.offset == 16])
    result = verify(second_broker, database_url, public)
    assert result.first_bad == (2, 4)
    assert "does not match the signed checkpoint at offset 7" in result.reason

    # An attacker who gets round the trigger and replaces them: the signature fails.
    with psycopg.connect(database_url) as conn:
        conn.execute("ALTER TABLE integrity.checkpoints DISABLE TRIGGER checkpoints_append_only")
        conn.execute('DELETE FROM integrity.checkpoints WHERE "partition" = 2 AND "offset" >= 6')
        conn.execute("ALTER TABLE integrity.checkpoints ENABLE TRIGGER checkpoints_append_only")
        write_checkpoints(conn, forged)
    result = verify(second_broker, database_url, public)
    assert not result.ok
    assert result.first_bad == (2, 7)
    assert "signature does not verify" in result.reason

    # ...and there is no key in the database to swap: verify trusts only the key it is given.
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('integrity.signing_key')").fetchone()[0] is None
    assert not verify(second_broker, database_url, public).ok


def test_an_altered_checkpoint_row_is_rejected(
    signed_log: list[LogRecord], broker: str, database_url: str, public: Ed25519PublicKey
) -> None:
    with psycopg.connect(database_url) as conn:
        for sql in (
            'UPDATE integrity.checkpoints SET chain_hash = chain_hash WHERE "offset" = 7',
            "DELETE FROM integrity.checkpoints",
            "TRUNCATE integrity.checkpoints",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
            conn.rollback()
        conn.execute("ALTER TABLE integrity.checkpoints DISABLE TRIGGER checkpoints_append_only")
        conn.execute(
            "UPDATE integrity.checkpoints SET chain_hash = sha256(chain_hash)"
            ' WHERE "partition" = 3 AND "offset" = 11'
        )
        conn.commit()
    result = verify(broker, database_url, public)
    assert not result.ok
    assert result.first_bad == (3, 11)
    assert "signature does not verify" in result.reason


def test_checkpoint_rows_deleted_from_the_database_fail_against_their_copy(
    signed_log: list[LogRecord], broker: str, database_url: str, public: Ed25519PublicKey
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE integrity.checkpoints DISABLE TRIGGER checkpoints_append_only")
        conn.execute('DELETE FROM integrity.checkpoints WHERE "partition" = 3 AND "offset" = 15')
    result = verify(broker, database_url, public)  # the chain alone would pass: a shorter tail
    assert not result.ok and result.first_bad == (3, 15)
    assert "deleted from PostgreSQL" in result.reason
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM integrity.checkpoints")
    result = verify(broker, database_url, public)
    assert not result.ok and result.first_bad == (0, 3) and "deleted" in result.reason


# --- the store -------------------------------------------------------------------------


def test_the_signing_key_is_a_file_of_its_own_not_wrapped_by_the_master_key(
    signed_log: list[LogRecord], broker: str, database_url: str, tmp_path: Path
) -> None:
    key = load_signing_key({}, tmp_path, generate=True)
    assert oct((tmp_path / "signing.key").stat().st_mode & 0o777) == "0o600"
    again = load_signing_key({}, tmp_path, generate=False)
    assert again.private_bytes_raw() == key.private_bytes_raw()
    with pytest.raises(MasterKeyError, match="no signing key"):
        load_signing_key({}, tmp_path / "elsewhere", generate=False)
    pem = public_key_pem(key)
    assert read_public_key(pem, "pem").public_bytes_raw() == key.public_key().public_bytes_raw()
    with psycopg.connect(database_url) as conn:  # the database holds no signing key at all
        assert conn.execute("SELECT to_regclass('integrity.signing_key')").fetchone()[0] is None
    # a key that did not sign: every checkpoint fails its signature
    result = verify(broker, database_url, Ed25519PrivateKey.generate().public_key())
    assert not result.ok and "signature does not verify" in result.reason


def test_the_async_store_writes_in_the_callers_transaction(database_url: str) -> None:
    log = [LogRecord(TOPIC, p, o, b"k", bytes([o]) * 10, (("h", b"v"),), 0)
           for p in (0, 1) for o in range(10)]

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            key = Ed25519PrivateKey.generate()
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    assert len(await achain_batch(conn, log[:5], key)) == 1
                    1 / 0  # noqa: B018 - the batch fails: nothing of it stays
            assert await aread_checkpoints(conn, TOPIC) == []
            async with conn.transaction(), conn.cursor() as cur:  # as a batch hook gets it
                cps = await achain_batch(cur, log[:5] + log[10:13], key)
            assert [(c.partition, c.offset) for c in cps] == [(0, 4), (1, 2)]
            async with conn.transaction():
                # A redelivered batch (offsets below the heads) adds nothing; then it goes on.
                assert await achain_batch(conn, log[2:5], key) == []
                cps = await achain_batch(conn, log[3:10] + log[13:20], key)
            assert [(c.partition, c.offset) for c in cps] == [(0, 9), (1, 9)]
            latest = await alatest_checkpoints(conn, TOPIC)
            assert {p: c.offset for p, c in latest.items()} == {0: 9, 1: 9}
            assert (await alatest_checkpoints(conn, TOPIC, [1]))[1].offset == 9
            public = key.public_key()
            stored = await aread_checkpoints(conn, TOPIC)
            assert len(stored) == 4
            assert verify_log(log, stored, public, topic=TOPIC).ok

    asyncio.run(scenario())
    with psycopg.connect(database_url) as conn:
        assert {p: c.offset for p, c in latest_checkpoints(conn, TOPIC, [0]).items()} == {0: 9}
        with pytest.raises(psycopg.errors.UniqueViolation):
            write_checkpoints(conn, read_checkpoints(conn, TOPIC)[:1])

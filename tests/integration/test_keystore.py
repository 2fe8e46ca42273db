"""The key store in a real PostgreSQL: erased subjects get no key, destroyed keys stay destroyed,
also after a restore of the key store, and wrapped keys need the master key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from events.catalogue import load_catalogue
from events.codec import decode, encode, key_refs, reveal
from events.crypto import REDACTED, MasterKeyError, new_data_key
from events.keys import KeyRef
from events.keystore import KeyStore
from events.log import LogReader
from events.publisher import Publisher
from events.validation import parse_event

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
NOW = datetime(2026, 9, 15, 8, 0, tzinfo=UTC)


def example(name: str, line: int = 1, **envelope) -> dict:
    text = (EXAMPLES / f"{name}.valid.jsonl").read_text(encoding="utf-8").splitlines()[line - 1]
    return {**json.loads(text), **envelope}


def lookup_in(keystore: KeyStore):
    return lambda ref, version: keystore.keys_for_reading([ref]).get((ref, version))


def key_rows(database_url: str, subject: str | None = None) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT subject_id, category, period, version, wrapped, created_at"
            " FROM keystore.data_keys WHERE %s::text IS NULL OR subject_id = %s"
            " ORDER BY subject_id, category, period, version",
            (subject, subject),
        ).fetchall()


def test_erased_subject_gets_no_new_key_and_is_written_redacted(
    broker, keystore, database_url
):
    subject = "acc-erased-77"
    keystore.mark_erased(subject, NOW)
    assert keystore.is_erased(subject)
    created = example("AccountCreated", 1, subject_id=subject)
    updated = example("AccountUpdated", 1, subject_id=subject)
    connection = example("ConnectionRecorded", 1, subject_id=subject)
    with Publisher(broker, keystore) as pub:
        # a new account under an ended subject's id is refused (domain.md, Time and trust);
        # what else is said about the subject is stored redacted, and reported so
        report = pub.publish_many([created, updated, connection])
    assert report.rejected == [(0, "subject_id: the account of this subject ended (deleted"
                                   " or erased): a new account needs a new subject_id")]
    assert report.published == 2 and report.redacted == [1, 2]
    assert key_rows(database_url, subject) == []
    assert keystore.key_refs(subject) == []

    with LogReader(broker) as reader:
        records = [decode(r.value) for r in reader.read(key=subject.encode())]
    assert [r.type for r in records] == ["AccountUpdated", "ConnectionRecorded"]
    cat = load_catalogue()
    for record in records:
        sealed = record.sealed_fields(cat.types[record.type])
        assert sealed and all(value == REDACTED for _, value in sealed)
        assert b"canarivaux" not in json.dumps(record.data, default=repr).encode()
    back = reveal(records[0], lookup_in(keystore)).to_json()["data"]
    assert back["email"] is None


def test_erasure_after_keys_exist_blocks_new_keys_for_the_subject(keystore, database_url):
    event = parse_event(example("AccountCreated", 1))
    keystore.keys_for_writing(key_refs(event))
    assert len(key_rows(database_url, event.subject_id)) == 2
    keystore.mark_erased(event.subject_id, NOW)
    keystore.destroy(keystore.key_refs(event.subject_id), NOW, "erasure")
    later = parse_event(example("ConnectionRecorded", 1))
    assert keystore.keys_for_writing(key_refs(later)) == {}
    assert key_rows(database_url, event.subject_id) == []


def test_destroyed_key_is_not_recreated_and_its_data_is_unreadable(keystore, database_url):
    event = parse_event(example("AccountCreated", 1))
    keys = keystore.keys_for_writing(key_refs(event))
    record = decode(encode(event, keys))
    assert reveal(record, lookup_in(keystore)).to_json() == event.to_json()

    identity = KeyRef(event.subject_id, "identity", "")
    contact = KeyRef(event.subject_id, "contact", "")
    assert keystore.destroy([identity], NOW, "erasure: identity") == [identity]
    assert keystore.destroy([identity], NOW, "again") == []  # already gone

    again = keystore.keys_for_writing(key_refs(event))
    assert identity not in again and contact in again
    assert [r[1] for r in key_rows(database_url, event.subject_id)] == ["contact"]

    data = reveal(record, lookup_in(keystore)).to_json()["data"]
    assert data["first_name"] is None and data["last_name"] is None and data["gender"] is None
    assert data["email"] == event.data["email"]
    # a new event for the subject: identity fields redacted, contact still sealed
    fresh = decode(encode(event, again))
    assert fresh.data["first_name"] == REDACTED and fresh.data["email"] != REDACTED


def test_monthly_keys_expire_month_by_month(keystore):
    march = parse_event(example("ConnectionRecorded", 1))
    april = parse_event(example("ConnectionRecorded", 1,
                                event_id="4f6a8c0e-2b3d-4f5a-8c7e-9b1d3f5a7c92",
                                occurred_at="2026-04-02T09:00:00+02:00"))
    rec_march = decode(encode(march, keystore.keys_for_writing(key_refs(march))))
    rec_april = decode(encode(april, keystore.keys_for_writing(key_refs(april))))
    keystore.destroy([KeyRef(march.subject_id, "connection", "2026-03"),
                      KeyRef(march.subject_id, "location", "2026-03")], NOW, "retention")
    assert reveal(rec_march, lookup_in(keystore)).to_json()["data"]["ip"] is None
    assert reveal(rec_april, lookup_in(keystore)).to_json() == april.to_json()


def test_restored_key_store_dump_is_scrubbed_by_reapply_tombstones(keystore, database_url):
    alice = parse_event(example("AccountCreated", 1))
    bob = parse_event(example("AccountCreated", 2))
    eve = parse_event(example("ConnectionRecorded", 3))
    for event in (alice, bob, eve):
        keystore.keys_for_writing(key_refs(event))
    records = {e.subject_id: decode(encode(e, keystore.keys_for_writing(key_refs(e))))
               for e in (alice, bob, eve)}
    backup = key_rows(database_url)  # the "dump" of schema keystore, taken before erasure
    assert len(backup) == 6

    destroyed = keystore.destroy(keystore.key_refs(alice.subject_id), NOW, "erasure")
    assert len(destroyed) == 2
    keystore.mark_erased(eve.subject_id, NOW)
    keystore.destroy(keystore.key_refs(eve.subject_id), NOW, "erasure")

    # restore the dump: the keys are back (that is what a restore does) ...
    with psycopg.connect(database_url) as conn:
        conn.execute("TRUNCATE keystore.data_keys, keystore.erased_subjects")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO keystore.data_keys"
                " (subject_id, category, period, version, wrapped, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                backup,
            )
    assert len(key_rows(database_url)) == 6
    assert not keystore.is_erased(eve.subject_id)

    # ... until the tombstones are re-applied
    assert keystore.reapply_tombstones() >= 2
    assert keystore.key_refs(alice.subject_id) == []
    assert keystore.key_refs(eve.subject_id) == []
    assert keystore.is_erased(eve.subject_id)
    assert len(keystore.key_refs(bob.subject_id)) == 2
    lookup = lookup_in(keystore)
    assert reveal(records[alice.subject_id], lookup).to_json()["data"]["email"] is None
    assert reveal(records[eve.subject_id], lookup).to_json()["data"]["ip"] is None
    assert reveal(records[bob.subject_id], lookup).to_json() == bob.to_json()
    # and they stay destroyed: asking for them again creates nothing
    assert keystore.keys_for_writing(key_refs(alice)) == {}
    assert keystore.keys_for_writing(key_refs(eve)) == {}
    assert keystore.reapply_tombstones() == 0


def test_wrapped_keys_need_the_master_key(keystore, database_url):
    event = parse_event(example("AccountCreated", 1))
    keys = keystore.keys_for_writing(key_refs(event))
    rows = key_rows(database_url, event.subject_id)
    assert len(rows) == len(keys) == 2
    for _, data_key in keys.values():
        assert all(data_key not in bytes(row[4]) for row in rows)
    other = KeyStore.connect(database_url, new_data_key())
    try:
        with pytest.raises(MasterKeyError):
            other.keys_for_reading(key_refs(event))
    finally:
        other.close()


def test_concurrent_writers_share_one_key(database_url, master_key):
    event = parse_event(example("AccountCreated", 1))
    one = KeyStore.connect(database_url, master_key)
    two = KeyStore.connect(database_url, master_key)
    try:
        assert one.keys_for_writing(key_refs(event)) == two.keys_for_writing(key_refs(event))
    finally:
        one.close()
        two.close()

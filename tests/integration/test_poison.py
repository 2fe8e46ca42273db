"""Poison messages produced raw to the ledger topic: each lands in the dead-letter topic and in
projections.dead_letters, with where and why but no payload, and the good events around it
are applied."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
import workers as w
from kafka import KafkaProducer

from events.catalogue import load_catalogue, topic_name
from events.codec import MAGIC, encode, key_refs
from events.log import LogReader
from events.model import Event
from events.publisher import headers_for
from events.validation import parse_event
from projections.positions import lag

pytestmark = pytest.mark.integration

LEDGER = topic_name("ledger")
TEN_MB = 10 * 1024 * 1024  # the embedded broker accepts it: the send would fail


def sealed(keystore, obj) -> bytes:
    event = parse_event(obj)
    return encode(event, keystore.keys_for_writing(key_refs(event)))


def test_poison_messages_are_dead_lettered_and_the_good_ones_applied(
        broker, database_url, master_key, keystore, tmp_path):
    story = w.story()
    active = [e for e in story if e["subject_id"] == w.ACTIVE]
    before, after = active[:5], active[5:] + [e for e in story if e["subject_id"] != w.ACTIVE]
    worker = w.Worker(broker, database_url, master_key, tmp_path / "home")
    try:
        w.publish(broker, keystore, before)
        with LogReader(broker) as reader:
            real = next(r for r in reader.read(key=w.ACTIVE.encode())).value  # AccountCreated
        mismatched = w.event("ConnectionRecorded", w.ACTIVE, w.ago(1), {"ip": "192.0.2.99"})
        unknown_subject = w.event("AccountUpdated", "acc-777777", w.ago(1),
                                  {"email": "inconnu@exemple-canari.fr"})
        # an event id that is no UUID (the reader refuses it); and a text no PostgreSQL text
        # column stores (NUL), which a publisher that skips validation can still send
        not_uuid = encode(Event("not-a-uuid", "DocumentIssued", w.ACTIVE, datetime.now(UTC),
                                "website-test", {"kind": "invoice", "document_ref": "F-1"}), {})
        nul_id = str(uuid.uuid4())
        nul = encode(Event(nul_id, "DocumentIssued", w.ACTIVE, datetime.now(UTC),
                           "website-test", {"kind": "invoice", "document_ref": "F-\x00-2"}), {})
        # ... or in the subject id (and its key)
        nul_subject = "acc-90\x0043"
        nul_subject_id = str(uuid.uuid4())
        nul_key = encode(Event(nul_subject_id, "DocumentIssued", nul_subject,
                               datetime.now(UTC), "website-test",
                               {"kind": "invoice", "document_ref": "F-3"}), {})
        key = w.ACTIVE.encode()
        poison = {  # name -> (key, value, expected reason, expected type header)
            "truncated": (key, real[: len(real) // 2], "body does not decode", ""),
            "unknown schema": (key, MAGIC + os.urandom(8) + real[10:],
                               "unknown schema fingerprint", ""),
            "not avro": (key, b"hello, not an event", "bad marker", ""),
            "null value": (key, None, "bad marker", ""),
            "key mismatch": (w.DELETED.encode(), sealed(keystore, mismatched),
                             "Kafka key does not match subject_id", "ConnectionRecorded"),
            "ten megabytes": (key, MAGIC + b"\0" * (TEN_MB - 2), "exceeds", ""),
            "event id not a uuid": (key, not_uuid, "body does not decode", ""),
            "nul in a stored text": (key, nul, "NUL character", "DocumentIssued"),
            "nul in the subject id": (nul_subject.encode(), nul_key, "NUL character",
                                      "DocumentIssued"),
        }
        producer = KafkaProducer(bootstrap_servers=broker, acks="all",
                                 max_request_size=TEN_MB + (1 << 20), request_timeout_ms=30_000)
        positions = {}
        for name, (k, value, _, _) in poison.items():
            headers = headers_for("AccountCreated", load_catalogue()) if value else []
            md = producer.send(LEDGER, key=k, value=value, headers=headers).get(timeout=30)
            positions[name] = (md.partition, md.offset)
        producer.close()
        w.publish(broker, keystore, [unknown_subject])  # valid, but the fold rejects it
        with LogReader(broker) as reader:
            rejected = max((r.partition, r.offset) for r in reader.read(key=b"acc-777777"))
        positions["fold rejects"] = rejected
        poison["fold rejects"] = (None, None, "no live account to update", "AccountUpdated")
        w.publish(broker, keystore, after)
        w.wait_applied(broker, database_url, workers=[worker])
        assert worker.alive
    finally:
        worker.stop()

    # the dead-letter topic: one record per poison message, no payload, where and why
    with LogReader(broker, topic_name("deadletter")) as reader:
        letters = list(reader.read())
    assert len(letters) == len(poison)
    found = {}
    for letter in letters:
        assert letter.value == b""
        h = dict(letter.headers)
        assert h["registre-source-topic"] == LEDGER.encode()
        found[(int(h["registre-source-partition"]), int(h["registre-source-offset"]))] = h
    assert set(found) == set(positions.values())
    for name, (_, _, reason, event_type) in poison.items():
        h = found[positions[name]]
        assert reason in h["registre-reason"].decode(), (name, h)
        assert h.get("registre-type", b"").decode() == event_type, name

    # ... and the same in projections.dead_letters, in the same transaction as the offsets
    rows = w.query(database_url, 'SELECT topic, partition, "offset", event_type, reason'
                   " FROM projections.dead_letters")
    assert {(p, o) for _, p, o, _, _ in rows} == set(positions.values())
    by_position = {(p, o): (t, reason) for topic, p, o, t, reason in rows if topic == LEDGER}
    for name, (_, _, reason, event_type) in poison.items():
        got_type, got_reason = by_position[positions[name]]
        assert reason in got_reason and (got_type or "") == event_type, name

    # nothing personal in a reason
    reasons = " ".join(r[4] for r in rows) + " ".join(
        h["registre-reason"].decode() for h in found.values())
    for value in w.personal_values([*story, mismatched, unknown_subject]):
        assert value not in reasons

    # the good events around the poison are applied, in order, each once
    applied = {r[0] for r in w.query(database_url,
                                     "SELECT event_id::text FROM projections.applied_events")}
    good = {e["event_id"] for e in story}
    assert good <= applied
    assert applied == w.distinct_event_ids(broker) - {
        mismatched["event_id"], unknown_subject["event_id"], nul_id, nul_subject_id}
    doc = w.scalar(database_url, "SELECT doc FROM projections.customer_view WHERE subject_id"
                   " = %s", (w.ACTIVE,))
    assert doc["counts"]["events"] == len(active)
    assert doc["last_connection"]["event_id"] == [
        e for e in active if e["type"] == "ConnectionRecorded"][-1]["event_id"]
    assert w.scalar(database_url, "SELECT count(*) FROM projections.customer_view"
                    " WHERE subject_id = 'acc-777777'") == 0
    # the log positions of the poison are passed, and archived without their bytes
    assert all(n == 0 for n in lag(broker, database_url).values())
    archived = dict(((p, o), (poisoned, value is None)) for p, o, poisoned, value in w.query(
        database_url, 'SELECT partition, "offset", poison, value FROM projections.archive'))
    for name in ("truncated", "unknown schema", "not avro", "null value", "ten megabytes"):
        assert archived[positions[name]] == (True, True), name

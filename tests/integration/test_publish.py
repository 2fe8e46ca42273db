"""Publishing every example to a real broker (Tansu) with keys in a real PostgreSQL, reading
the raw messages back, and checking what travels: ciphertext only, the subject as key, two
headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from events.catalogue import load_catalogue
from events.codec import decode, reveal
from events.keys import KeyRef
from events.keystore import KeyStore
from events.log import LogReader
from events.model import Event
from events.publisher import SCHEMA_HEADER, TYPE_HEADER, Publisher
from events.validation import InvalidEvent, parse_event

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def valid_examples() -> list[dict]:
    out = []
    for path in sorted(EXAMPLES.glob("*.valid.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return out


def is_registre(obj: dict) -> bool:
    return load_catalogue().types[obj["type"]].origin == "registre"


def personal_needles(examples: list[dict]) -> set[bytes]:
    """Every personal value of the examples, as it would look in clear."""
    cat = load_catalogue()
    needles: set[bytes] = set()
    for obj in examples:
        for field in cat.types[obj["type"]].pii:
            value = obj["data"]
            for part in field.path[1:]:
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                continue
            if field.plain == "double":
                needles |= {struct.pack(">d", value), struct.pack("<d", value),
                            repr(float(value)).encode()}
            elif len(value) >= 5:  # shorter ones (FR, male) occur by chance in ciphertext
                needles |= {value.encode("utf-8"), value.encode("utf-16-le")}
    return needles


def read_all(bootstrap: str):
    with LogReader(bootstrap) as reader:
        return list(reader.read())


def lookup_in(keystore: KeyStore):
    return lambda ref, version: keystore.keys_for_reading([ref]).get((ref, version))


def publish_examples(broker: str, keystore: KeyStore, examples: list[dict]) -> None:
    website = [o for o in examples if not is_registre(o)]
    own = [o for o in examples if is_registre(o)]
    with Publisher(broker, keystore) as pub:
        report = pub.publish_many(website)
        assert report.rejected == [] and report.published == len(website)
    with Publisher(broker, keystore, allow_registre=True) as pub:
        assert pub.publish_many(own).published == len(own)


def test_every_example_round_trips_through_the_broker(broker, keystore):
    examples = valid_examples()
    publish_examples(broker, keystore, examples)
    expected = {o["event_id"]: parse_event(o, allow_registre=True).to_json() for o in examples}
    records = read_all(broker)
    assert len(records) == len(examples)

    cat = load_catalogue()
    seen = {}
    lookup = lookup_in(keystore)
    for rec in records:
        record = decode(rec.value)
        etype = cat.types[record.type]
        assert rec.key == record.subject_id.encode()
        assert rec.headers == (
            (TYPE_HEADER, record.type.encode()),
            (SCHEMA_HEADER, etype.fingerprint.hex().encode()),
        )
        seen[record.event_id] = reveal(record, lookup).to_json()
    assert seen == expected


def test_no_personal_value_travels_in_clear(broker, keystore):
    examples = valid_examples()
    publish_examples(broker, keystore, examples)
    needles = personal_needles(examples)
    assert len(needles) > 60  # the scan looks for something
    records = read_all(broker)
    assert len(records) == len(examples)
    for rec in records:
        raw = [rec.value, rec.key or b""] + [n.encode() + v for n, v in rec.headers]
        for blob in raw:
            for needle in needles:
                assert needle not in blob, (rec.offset, needle)
    # the personal values are there, sealed: they decrypt
    lookup = lookup_in(keystore)
    clear = json.dumps([reveal(decode(r.value), lookup).to_json() for r in records],
                       ensure_ascii=False).encode()
    assert b"zephyrine.canarivaux@exemple-canari.fr" in clear


def test_events_of_a_subject_stay_in_order_on_one_partition(broker, keystore):
    examples = [o for o in valid_examples() if not is_registre(o)]
    examples.sort(key=lambda o: parse_event(o).occurred_at)
    publish_examples(broker, keystore, examples)
    by_subject: dict[str, list[tuple[int, int, str]]] = {}
    for rec in read_all(broker):
        record = decode(rec.value)
        by_subject.setdefault(record.subject_id, []).append(
            (rec.partition, rec.offset, record.event_id))
    for subject, got in by_subject.items():
        assert len({p for p, _, _ in got}) == 1, subject
        published = [o["event_id"] for o in examples if o["subject_id"] == subject]
        assert [e for _, _, e in sorted(got)] == published


def test_keys_are_per_subject_category_and_utc_month(broker, keystore):
    publish_examples(broker, keystore, valid_examples())
    assert keystore.key_refs("acc-000042") == sorted([
        KeyRef("acc-000042", "contact", ""), KeyRef("acc-000042", "identity", ""),
        KeyRef("acc-000042", "connection", "2026-03"), KeyRef("acc-000042", "location", "2026-03"),
    ])
    # 2026-07-31T23:30:00-02:00 is in August in UTC
    assert KeyRef("acc-000317", "connection", "2026-08") in keystore.key_refs("acc-000317")
    assert keystore.key_refs("vis-c0ffee42") == [
        KeyRef("vis-c0ffee42", "connection", "2026-05"),
        KeyRef("vis-c0ffee42", "location", "2026-05"),
    ]
    # records without personal fields create no key
    assert keystore.key_refs("acc-999999") == []


def test_rejected_events_publish_nothing_and_create_no_key(broker, keystore):
    good = valid_examples()[0]
    bad = json.loads((EXAMPLES / "AccountCreated.invalid.jsonl").read_text().splitlines()[0])
    bad["event"]["subject_id"] = "acc-rejected-1"
    registre_own = next(o for o in valid_examples() if is_registre(o))
    with Publisher(broker, keystore) as pub:
        report = pub.publish_many([bad["event"], good, registre_own])
        assert report.published == 1
        assert [i for i, _ in report.rejected] == [0, 2]
        assert report.rejected[0][1].startswith("data.over_15: ")
        assert report.rejected[1][1].startswith("type: ")
        with pytest.raises(InvalidEvent) as err:
            pub.publish(bad["event"])
        assert err.value.field == "data.over_15"
        event = pub.publish(parse_event(good))  # an Event value, published again
        assert isinstance(event, Event) and event.event_id == good["event_id"]
    ids = [decode(r.value).event_id for r in read_all(broker)]
    assert ids == [good["event_id"], good["event_id"]]  # dedup is downstream
    assert keystore.key_refs("acc-rejected-1") == []

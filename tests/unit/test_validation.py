"""Validation and the codec round trip, driven by schemas/examples (no broker, no database)."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.catalogue import load_catalogue
from events.codec import (
    MAGIC,
    MAX_MESSAGE,
    DecodeError,
    decode,
    encode,
    key_refs,
    lookup_from,
    reveal,
)
from events.crypto import REDACTED, new_data_key
from events.model import Event
from events.validation import InvalidEvent, parse_event

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def _lines(pattern: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted(EXAMPLES.glob(pattern)):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            out.append((f"{path.name.split('.')[0]}:{number}", json.loads(line)))
    return out


VALID = _lines("*.valid.jsonl")
INVALID = _lines("*.invalid.jsonl")


def _registre(type_name: str) -> bool:
    types = load_catalogue().types
    return type_name in types and types[type_name].origin == "registre"


def _parse(obj: dict) -> Event:
    return parse_event(obj, allow_registre=_registre(obj.get("type")))


def _keys(event: Event) -> tuple[dict, dict]:
    """Fresh keys for writing and the matching lookup table for reading."""
    writing = {ref: (1, new_data_key()) for ref in key_refs(event)}
    reading = {(ref, v): k for ref, (v, k) in writing.items()}
    return writing, reading


def _base() -> dict:
    return copy.deepcopy(dict(VALID)["AccountCreated:1"])


@pytest.mark.parametrize("obj", [v for _, v in VALID], ids=[k for k, _ in VALID])
def test_valid_example_validates_encodes_and_decodes_to_its_canonical_json(obj):
    event = _parse(obj)
    canonical = event.to_json()
    assert canonical["event_id"] == obj["event_id"]
    assert canonical["occurred_at"].endswith("Z")
    writing, reading = _keys(event)
    value = encode(event, writing)
    assert value[:2] == MAGIC
    assert value[2:10] == load_catalogue().types[obj["type"]].fingerprint
    record = decode(value)
    assert (record.type, record.event_id, record.subject_id) == (
        event.type, event.event_id, event.subject_id)
    assert reveal(record, lookup_from(reading)).to_json() == canonical
    # the canonical form is a fixed point of validation
    assert _parse(canonical).to_json() == canonical


@pytest.mark.parametrize("case", [v for _, v in INVALID], ids=[k for k, _ in INVALID])
def test_invalid_example_is_rejected_naming_the_field(case):
    with pytest.raises(InvalidEvent) as err:
        _parse(case["event"])
    assert err.value.field == case["field"]
    assert str(err.value).startswith(case["field"] + ": ")
    assert "\n" not in str(err.value)


def test_invalid_examples_cover_every_kind_of_mistake():
    fields = {case["field"] for _, case in INVALID}
    assert {
        "data.over_15",  # over_15 false, and "yes"
        "data.email",  # malformed, missing
        "data.postal_address.country", "data.country", "data.location.country",  # bad country
        "data.ip",  # bad IP
        "occurred_at",  # naive instant
        "event_id",  # not a UUID
        "data.purposes[1]",  # unknown purpose
        "data.categories[1]", "data.categories[0]",  # unknown category
        "data.nickname", "extra",  # unknown fields
        "type",  # unknown type
        "subject_id",  # an email, an IP
        "data.months",  # not a whole number, below 1
        "data.kind", "data.channel", "data.outcome",  # not one of the request enums
    } <= fields


def _steps(field: str) -> list:
    """"data.keys[0].category" -> ["data", "keys", 0, "category"]."""
    out: list = []
    for part in field.split("."):
        name, _, rest = part.partition("[")
        out.append(name)
        out += [int(i) for i in rest.replace("]", "").split("[") if i] if rest else []
    return out


def _restore(event: dict, base: dict, field: str) -> dict:
    """The event with ``field`` put back as in ``base`` (or removed where base has none)."""
    event = copy.deepcopy(event)
    steps = _steps(field)
    src, dst = base, event
    for step in steps[:-1]:
        src, dst = src[step], dst[step]
    last = steps[-1]
    if isinstance(src, list) or last in src:
        dst[last] = copy.deepcopy(src[last])
    else:
        del dst[last]
    return event


def test_each_invalid_example_has_exactly_the_one_mistake_it_names():
    """Putting the named field back as in the valid example it came from makes it valid."""
    for name, case in INVALID:
        bad = case["event"]
        base = next(
            (v for _, v in VALID if v["event_id"] == bad.get("event_id")),
            None,
        ) or next(v for _, v in VALID if v["subject_id"] == bad["subject_id"]
                  and v["occurred_at"] == bad["occurred_at"])
        _parse(_restore(bad, base, case["field"]))  # raises if another mistake remains
        assert bad != base, name


def test_registre_types_are_refused_without_allow_registre():
    for name, obj in VALID:
        if _registre(obj["type"]):
            with pytest.raises(InvalidEvent) as err:
                parse_event(obj)
            assert err.value.field == "type", name
            parse_event(obj, allow_registre=True)


def test_instants_are_stored_in_utc_with_microseconds():
    obj = _base()
    obj["occurred_at"] = "2026-11-30T23:59:59.123456-03:00"
    event = parse_event(obj)
    assert event.occurred_at == datetime(2026, 12, 1, 2, 59, 59, 123456, tzinfo=UTC)
    assert event.to_json()["occurred_at"] == "2026-12-01T02:59:59.123456Z"
    obj["occurred_at"] = "2026-03-01T09:30:00Z"
    assert parse_event(obj).to_json()["occurred_at"] == "2026-03-01T09:30:00Z"


def test_event_id_is_normalised_to_lowercase_uuid():
    obj = _base()
    obj["event_id"] = obj["event_id"].upper()
    assert parse_event(obj).event_id == _base()["event_id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"occurred_at": "0001-01-01T00:30:00+01:00"}, "occurred_at"),  # before year 1 in UTC
        ({"occurred_at": "9999-12-31T23:30:00-01:00"}, "occurred_at"),  # after 9999 in UTC
        ({"occurred_at": 1772353800}, "occurred_at"),
        ({"source": "web\ud800"}, "source"),  # lone surrogate from JSON "\ud800"
        ({"data.first_name": "Z\udcff"}, "data.first_name"),
        ({"data.first_name": "x" * 1001}, "data.first_name"),
        ({"data.first_name": "   "}, "data.first_name"),
        ({"data.first_name": "Jea\x00nne"}, "data.first_name"),  # NUL: no text column stores it
        ({"source": "web\x00"}, "source"),
        ({"data.gender": "Female"}, "data.gender"),
        ({"data.over_15": 1}, "data.over_15"),
        ({"data.\ud800": 1}, "data.\\ud800"),
        ({"\ud800": 1}, "\\ud800"),
        ({"data": []}, "data"),
        ({"data.postal_address": "17 rue des Canaris-Oubliés"}, "data.postal_address"),
        ({"subject_id": "Zéphyrine Canarivaux"}, "subject_id"),
        ({"subject_id": "-acc"}, "subject_id"),
        ({"subject_id": ""}, "subject_id"),
        ({"event_id": 42}, "event_id"),
        ({"type": None}, "type"),
    ],
)
def test_more_rejections(change, field):
    obj = _base()
    for key, value in change.items():
        if key.startswith("data."):
            obj["data"][key[5:]] = value
        elif key == "data":
            obj["data"] = value
        else:
            obj[key] = value
    with pytest.raises(InvalidEvent) as err:
        parse_event(obj)
    assert err.value.field == field
    str(err.value).encode("utf-8")  # printable as one line of UTF-8


def test_not_an_object():
    for obj in ([], "AccountCreated", 3, None):
        with pytest.raises(InvalidEvent) as err:
            parse_event(obj)
        assert err.value.field == "event"


def test_rejection_messages_never_echo_personal_values():
    obj = _base()
    obj["data"]["email"] = "zephyrine.canarivaux-bad@@exemple-canari"
    obj["data"]["phone"] = "téléphone-canari"
    for field in ("email", "phone"):
        bad = _base()
        bad["data"][field] = obj["data"][field]
        with pytest.raises(InvalidEvent) as err:
            parse_event(bad)
        assert obj["data"][field] not in str(err.value)
        assert "canari" not in str(err.value).lower()


def test_missing_optional_fields_read_back_as_absent():
    obj = dict(VALID)["ConnectionRecorded:2"]
    event = parse_event(obj)
    assert event.to_json()["data"]["location"] is None
    writing, reading = _keys(event)
    back = reveal(decode(encode(event, writing)), lookup_from(reading)).to_json()
    assert back["data"]["location"] is None and back["data"]["cookie_id"] is None


def test_personal_values_are_sealed_in_the_message():
    event = parse_event(_base())
    writing, _ = _keys(event)
    value = encode(event, writing)
    for leaf in ("Canarivaux", "Zéphyrine", "zephyrine.canarivaux@exemple-canari.fr",
                 "Villefranche-sur-Saône", "17 rue des Canaris-Oubliés", "+33 6 71 42 93 58"):
        assert leaf.encode() not in value
    record = decode(value)
    assert isinstance(record.data["email"], bytes) and record.data["email"][0] == 1
    assert record.data["over_15"] is True and record.data["notice_version"] == "2026-02"


def test_without_keys_personal_fields_are_written_redacted():
    event = parse_event(_base())
    record = decode(encode(event, {}))
    etype = load_catalogue().types["AccountCreated"]
    sealed = dict((f.dotted, v) for f, v in record.sealed_fields(etype))
    assert sealed and set(sealed.values()) == {REDACTED}
    back = reveal(record, lambda ref, version: None).to_json()
    assert back["data"]["email"] is None and back["data"]["postal_address"]["city"] is None
    assert back["data"]["over_15"] is True


def test_decode_rejects_what_is_not_a_registre_event():
    event = parse_event(_base())
    writing, _ = _keys(event)
    value = encode(event, writing)
    bad = {
        "empty": b"",
        "marker": b"\xc3\x02" + value[2:],
        "json": json.dumps(_base()).encode(),
        "fingerprint": value[:2] + bytes(8) + value[10:],
        "truncated": value[:-20],
        "trailing": value + b"\x00",
        "too large": value + bytes(MAX_MESSAGE),
    }
    for name, raw in bad.items():
        with pytest.raises(DecodeError):
            decode(raw)
        assert name


def test_uuid_fields_inside_data_stay_strings():
    obj = dict(VALID)["ErasureCompleted:1"]
    event = parse_event(obj, allow_registre=True)
    record = decode(encode(event, {}))
    assert record.data["trigger_event_id"] == obj["data"]["trigger_event_id"]
    assert isinstance(record.data["trigger_event_id"], str)
    uuid.UUID(record.data["trigger_event_id"])


@pytest.mark.parametrize("months, reason", [
    (True, "expected a whole number"), (2.0, "expected a whole number"),
    (-1, "must be at least 1"), (2**31, "must be at most 2147483647"),
])
def test_whole_numbers_are_ints_within_their_range(months, reason):
    obj = copy.deepcopy(dict(VALID)["RequestExtended:1"])
    obj["data"]["months"] = months
    with pytest.raises(InvalidEvent, match=f"^data.months: {reason}$"):
        parse_event(obj)


def test_an_int_field_round_trips_as_an_int():
    event = parse_event(dict(VALID)["RequestExtended:1"])
    record = decode(encode(event, {}))
    assert record.data["months"] == 2 and type(record.data["months"]) is int


@pytest.mark.parametrize("event_id, read", [
    ("6F9619FF-8B86-D011-B42D-00C04FC964FF", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
    ("{6f9619ff-8b86-d011-b42d-00c04fc964ff}", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
    ("not-a-uuid", None),
])
def test_a_written_event_id_reads_in_canonical_form_or_not_at_all(event_id, read):
    # the decoder reads uuids as plain strings where it can (no UUID object per event): what
    # it gives must stay what fastavro's uuid type and str() gave, for any writer's bytes
    import io

    import fastavro

    from events.codec import MAGIC, DecodeError, decode

    etype = load_catalogue().types["ConsentGiven"]
    out = io.BytesIO()
    out.write(MAGIC + etype.fingerprint)
    fastavro.schemaless_writer(out, _without_logical_uuid(etype), {
        "envelope": {"event_id": event_id, "subject_id": "acc-1", "source": "t",
                     "occurred_at": datetime(2026, 3, 3, tzinfo=UTC)},
        "data": {"purposes": ["marketing"], "notice_version": "v1", "mechanism": "api"}})
    if read is None:
        with pytest.raises(DecodeError, match="ConsentGiven: body does not decode"):
            decode(out.getvalue())
    else:
        assert decode(out.getvalue()).event_id == read


def _without_logical_uuid(etype):  # a writer that puts any string where a uuid goes
    import fastavro

    from events.codec import _without_uuid

    return fastavro.parse_schema(_without_uuid(etype.schema))


def _plain(value):
    """An event's (frozen) data as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _text_paths(value, path=()):
    """Where the clear texts of an event's data are (any depth, in dicts and lists)."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _text_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _text_paths(v, (*path, i))


def test_a_nul_in_any_clear_text_of_any_event_is_a_dead_letter_for_the_processors():
    """A publisher that skipped validation: `decode_item` (the processors' and the rebuild's
    one rule) refuses a NUL wherever it is in the data, and only then."""
    from events.log import LogRecord
    from projections.writer import decode_item

    catalogue = load_catalogue()
    checked, nested = 0, 0
    for name, obj in VALID:
        event = _parse(obj)
        writing, _ = _keys(event)
        pii = {f.path[1:] for f in catalogue.types[event.type].pii}
        for path in [None, *_text_paths(_plain(event.data))]:
            data = _plain(event.data)
            if path is not None:
                if path in pii:
                    continue  # sealed: bytes on the wire, no text
                leaf = data
                for part in path[:-1]:
                    leaf = leaf[part]
                leaf[path[-1]] = leaf[path[-1]][:1] + "\x00" + leaf[path[-1]][1:]
            try:
                value = encode(Event(event.event_id, event.type, event.subject_id,
                                     event.occurred_at, event.source, data), writing)
            except ValueError:  # not even writable (a uuid, a fixed enum): never on the wire
                continue
            item = LogRecord("t", 0, 0, event.subject_id.encode(), value, (), 0)
            record, refusal = decode_item(item, catalogue, None)
            assert (refusal is not None) == (path is not None), (name, path)
            if record is not None and refusal is not None:  # (else: a uuid that no longer
                assert "NUL" in refusal[0] and "\x00" not in refusal[0]  # decodes)
                checked += 1
                nested += len(path) > 1
    assert checked > 20 and nested > 5  # nested texts too, not only the top level


ADDRESSES = [
    "mathis.robert621@example.fr", "a@b.co", "Jean.Dupont@Example.FR", "x+tag@sub.example.org",
    "o'brien@example.ie", "a!#$%&'*+/=?^_`{|}~-z@example.com", ".dot@example.com",
    "dot.@example.com", "two..dots@example.com", "no-at-sign.example.com", "@example.com",
    "local@", "a@@example.com", "a@b@example.com", '"quoted"@example.com', "a b@example.com",
    "Name <a@example.com>", "élodie@example.fr", "a@exämple.fr", "a@[192.0.2.1]",
    "a@localhost", "a@example", "a@-example.com", "a@example-.com", "a@example..com",
    "a@example.com.", "a@.example.com", "a@example.invalid", "a@test", "a@xn--80ak6aa92e.com",
    "a@" + "b" * 64 + ".com", "x" * 64 + "@example.com", "x" * 65 + "@example.com",
    "x" * 200 + "@" + "d" * 40 + ".fr", "x" * 240 + "@example.fr", "a@EXAMPLE.fr",
    "a@123.example", "a@1.2.3.4", "a@example.c", "a\t@example.com", "a@exa_mple.com",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_quick_email_check_agrees_with_email_validator(address):
    """The shortcut (a dot-atom local part, a domain checked once) accepts nothing that
    email_validator refuses, and every address ends with email_validator's verdict."""
    from email_validator import EmailNotValidError, validate_email

    from events.validation import _email, _plain_email

    try:
        validate_email(address, check_deliverability=False)
        accepted = True
    except EmailNotValidError:
        accepted = False
    if _plain_email(address):
        assert accepted, address
    try:
        _email(address, "data.email")
        assert accepted, address
    except InvalidEvent as exc:
        assert not accepted and str(exc) == "data.email: not a well-formed email address"

"""The schemas in schemas/ are the contract: they parse, their fingerprints are unique, their
personal fields carry known categories, and they say what domain.md says."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import pytest

from events.catalogue import CATEGORIES, _pii_fields, load_catalogue, load_topics, topic_name

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"

WEBSITE_TYPES = {
    "AccountCreated", "AccountUpdated", "ConnectionRecorded", "ConsentGiven", "ConsentRefused",
    "ConsentWithdrawn", "SharingAuthorised", "SharingRevoked", "DataShared", "DocumentIssued",
    "AccountDeleted", "ErasureRequested", "LegalHoldPlaced", "LegalHoldReleased",
    "RequestReceived", "RequestExtended", "RequestCompleted",
}
REGISTRE_TYPES = {"ConsentExpired", "KeysDestroyed", "ErasureCompleted"}

# domain.md: which personal field belongs to which category.
PII = {
    "AccountCreated": {
        "data.gender": "identity", "data.last_name": "identity", "data.first_name": "identity",
        "data.email": "contact", "data.phone": "contact",
        "data.postal_address.line1": "contact", "data.postal_address.line2": "contact",
        "data.postal_address.postal_code": "contact", "data.postal_address.city": "contact",
        "data.postal_address.country": "contact",
    },
    "ConnectionRecorded": {
        "data.ip": "connection", "data.user_agent": "connection", "data.cookie_id": "connection",
        "data.location.latitude": "location", "data.location.longitude": "location",
        "data.location.city": "location", "data.location.country": "location",
    },
}
PII["AccountUpdated"] = PII["AccountCreated"]
FORMATS = {"email", "iso_country", "ip", "phone", "subject_id"}


def test_catalogue_has_every_event_type_of_the_contract():
    cat = load_catalogue()
    files = {p.stem for p in (SCHEMAS / "events").glob("*.avsc")}
    assert set(cat.types) == files == WEBSITE_TYPES | REGISTRE_TYPES
    assert {n for n, t in cat.types.items() if t.origin == "registre"} == REGISTRE_TYPES
    assert {t.origin for t in cat.types.values()} == {"website", "registre"}


@pytest.mark.parametrize("path", sorted((SCHEMAS / "types").glob("*.avsc")), ids=lambda p: p.stem)
def test_every_named_type_is_valid_json_with_the_namespace(path: Path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["name"] == path.stem
    assert schema["namespace"] == "registre.events"
    assert schema["type"] in ("record", "enum")


def test_every_event_schema_parses_and_has_the_envelope_then_data():
    cat = load_catalogue()
    for name, etype in cat.types.items():
        fastavro.parse_schema(etype.schema)  # parses again from the expanded JSON
        fields = [f["name"] for f in etype.schema["fields"]]
        assert fields == ["envelope", "data"], name
        assert etype.schema["fields"][0]["type"]["name"] == "registre.events.Envelope"
        assert etype.doc, f"{name} has no doc"
        assert etype.canonical.startswith('{"name":"registre.events.' + name + '"')


def test_fingerprints_are_unique_8_bytes_and_indexed():
    cat = load_catalogue()
    fps = [t.fingerprint for t in cat.types.values()]
    assert all(len(fp) == 8 for fp in fps)
    assert len(set(fps)) == len(fps)
    assert {fp: t.name for fp, t in cat.by_fingerprint.items()} == {
        t.fingerprint: n for n, t in cat.types.items()
    }


def test_fingerprint_is_little_endian_crc64_of_the_canonical_form():
    # fastavro's hex string is already the little-endian byte order of the spec (and of Java
    # and the avro library): "null" -> 8a8f25cce724dd63, i.e. 0x63dd24e7cc258f8a little-endian
    assert fastavro.schema.fingerprint('"null"', "CRC-64-AVRO") == "8a8f25cce724dd63"
    cat = load_catalogue()
    for name, etype in cat.types.items():
        hexed = fastavro.schema.fingerprint(etype.canonical, "CRC-64-AVRO")
        assert etype.fingerprint.hex() == hexed, f"{name}: fingerprint bytes are reversed"


def test_every_pii_category_is_known_and_every_leaf_is_bytes():
    cat = load_catalogue()
    for name, etype in cat.types.items():
        for f in etype.pii:
            assert f.category in CATEGORIES, (name, f.dotted)
            assert f.plain in ("string", "double"), (name, f.dotted)
            assert f.path[0] == "data"


def _walk(node, path):
    """Every field spec of a record schema with its dotted path."""
    if isinstance(node, list):
        for branch in node:
            yield from _walk(branch, path)
    elif isinstance(node, dict) and node.get("type") == "record":
        for f in node["fields"]:
            yield f"{path}.{f['name']}", f
            yield from _walk(f["type"], f"{path}.{f['name']}")
    elif isinstance(node, dict) and node.get("type") == "array":
        yield from _walk(node["items"], path + "[]")


def test_pii_attributes_are_consistent():
    cat = load_catalogue()
    for name, etype in cat.types.items():
        for dotted, spec in _walk(etype.schema["fields"][1]["type"], "data"):
            if "pii" in spec:
                assert spec["pii"] in CATEGORIES, (name, dotted)
                assert spec["type"] in ("bytes", ["null", "bytes"]), (name, dotted)
                assert spec.get("plain", "string") in ("string", "double")
            else:
                assert "plain" not in spec and "range" not in spec, (name, dotted)
            if "format" in spec:
                assert spec["format"] in FORMATS, (name, dotted)
            if spec.get("plain") == "double":
                low, high = spec["range"]
                assert low < high


def test_personal_fields_are_the_ones_of_domain_md():
    cat = load_catalogue()
    for name, etype in cat.types.items():
        found = {f.dotted: f.category for f in etype.pii}
        assert found == PII.get(name, {}), name
    # consent, sharing, document and erasure records carry no personal field
    assert not any(cat.types[n].pii for n in WEBSITE_TYPES | REGISTRE_TYPES if n not in PII)


def test_optional_personal_fields_are_flagged_optional():
    created = {f.dotted: f for f in load_catalogue().types["AccountCreated"].pii}
    assert not created["data.email"].optional
    assert created["data.phone"].optional
    assert created["data.postal_address.line2"].optional
    updated = {f.dotted: f for f in load_catalogue().types["AccountUpdated"].pii}
    top = [f for f in updated.values() if len(f.path) == 2]
    assert top and all(f.optional for f in top)  # any subset of the personal fields


def test_an_unknown_pii_category_is_refused():
    record = {"type": "record", "name": "X", "fields": [
        {"name": "shoe_size", "type": "bytes", "pii": "anatomy", "plain": "string"}]}
    with pytest.raises(ValueError, match="data.shoe_size: unknown pii category 'anatomy'"):
        _pii_fields(record, ("data",), False)


def test_envelope_rules():
    env = json.loads((SCHEMAS / "types" / "Envelope.avsc").read_text())
    by_name = {f["name"]: f for f in env["fields"]}
    assert by_name["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}
    assert by_name["occurred_at"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert by_name["subject_id"]["format"] == "subject_id"


def test_enumerations_match_domain_md():
    named = load_catalogue().named_types
    assert named["registre.events.Purpose"]["symbols"] == [
        "service", "authentication", "support", "security", "optimisation", "personalised_ads",
        "marketing", "third_party_cookies", "disputes"]
    assert named["registre.events.Category"]["symbols"] == list(CATEGORIES)
    assert named["registre.events.Mechanism"]["symbols"] == ["banner_ok", "settings_page", "api"]
    assert named["registre.events.Basis"]["symbols"] == [
        "authorisation", "processor_contract", "legal_obligation"]
    assert named["registre.events.RequestKind"]["symbols"] == [
        "access", "rectification", "erasure", "restriction", "objection", "portability"]
    assert named["registre.events.RequestChannel"]["symbols"] == [
        "email", "post", "web_form", "phone", "in_person"]
    assert named["registre.events.RequestOutcome"]["symbols"] == [
        "fulfilled", "partially_fulfilled", "refused"]


def test_request_events_are_the_ones_of_domain_md():
    types = load_catalogue().types
    fields = {name: {f["name"]: f for f in types[name].data_fields}
              for name in ("RequestReceived", "RequestExtended", "RequestCompleted")}
    assert list(fields["RequestReceived"]) == ["request_id", "kind", "channel",
                                               "identity_verified"]
    assert list(fields["RequestExtended"]) == ["request_id", "months", "reason"]
    assert list(fields["RequestCompleted"]) == ["request_id", "outcome", "reason"]
    for name in fields:
        assert fields[name]["request_id"]["type"] == {"type": "string", "logicalType": "uuid"}
        assert types[name].origin == "website" and not types[name].pii
    assert fields["RequestExtended"]["months"]["type"] == "int"
    assert fields["RequestExtended"]["months"]["minimum"] == 1
    assert fields["RequestCompleted"]["reason"]["type"] == ["null", "string"]


def test_topic_manifest():
    topics = {t["role"]: t for t in load_topics()}
    assert topic_name("ledger") == "registre.ledger"
    assert topics["ledger"]["key"] == "subject_id"
    assert topics["ledger"]["retention_ms"] == -1


def test_every_event_type_has_valid_and_invalid_examples():
    for name in WEBSITE_TYPES | REGISTRE_TYPES:
        valid = (EXAMPLES / f"{name}.valid.jsonl").read_text(encoding="utf-8").splitlines()
        invalid = (EXAMPLES / f"{name}.invalid.jsonl").read_text(encoding="utf-8").splitlines()
        assert 2 <= len(valid) <= 3, name
        assert len(invalid) >= 2, name
        for line in valid:
            assert json.loads(line)["type"] == name
        for line in invalid:
            case = json.loads(line)
            assert set(case) == {"event", "field"}
    assert (EXAMPLES / "README.md").is_file()
    described = {p.name.split(".")[0] for p in EXAMPLES.glob("*.jsonl")}
    assert described == WEBSITE_TYPES | REGISTRE_TYPES

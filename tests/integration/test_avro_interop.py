"""Interoperability: what registre writes is standard Avro single-object encoding that the Apache
`avro` reference library reads with nothing but the .avsc files of schemas/.

avro 1.12 offers `Schema.fingerprint("CRC-64-AVRO")` (8 bytes, little-endian, as in Java), but
over its own `canonical_form`, which keeps logical-typed primitives as ``{"type":"string"}``
where the Parsing Canonical Form ([PRIMITIVES], [STRIP]) says ``"string"``, and keeps the
``symbols`` attribute that registre puts on personal fields (gender). So the fingerprint
of an event schema is cross-checked by letting avro parse registre's canonical form (which has
no logical type left) and fingerprint that; schemas without logical types are fingerprinted
by avro directly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import avro.io
import avro.name
import avro.schema
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form

from events.catalogue import load_catalogue
from events.codec import Record, decode, reveal
from events.keystore import KeyStore
from events.log import LogReader
from events.publisher import TYPE_HEADER, Publisher
from events.validation import parse_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"


def avro_schemas() -> dict[str, avro.schema.Schema]:
    """Every event schema parsed by avro from the files, sharing one Names for the types."""
    names = avro.name.Names()
    types = [json.loads(p.read_text(encoding="utf-8"))
             for p in sorted((SCHEMAS / "types").glob("*.avsc"))]
    types.sort(key=lambda s: s["type"] != "enum")  # enums first: records refer to them
    for schema in types:
        avro.schema.make_avsc_object(schema, names)
    return {
        p.stem: avro.schema.make_avsc_object(json.loads(p.read_text(encoding="utf-8")), names)
        for p in sorted((SCHEMAS / "events").glob("*.avsc"))
    }


def _primitive_form(node):
    """Undo avro 1.12's two departures from the Parsing Canonical Form: logical-typed
    primitives spelt ``{"type":"string"}``, and a field's own ``symbols`` attribute (registre's
    annotation of a personal field) kept as if it were an enum's."""
    if isinstance(node, dict):
        if set(node) == {"type"} and isinstance(node["type"], str):
            return node["type"]
        out = {k: _primitive_form(v) for k, v in node.items()}
        if "fields" in out:
            out["fields"] = [{"name": f["name"], "type": f["type"]} for f in out["fields"]]
        return out
    if isinstance(node, list):
        return [_primitive_form(v) for v in node]
    return node


def test_avro_reads_every_schema_and_agrees_on_the_canonical_form():
    cat = load_catalogue()
    schemas = avro_schemas()
    assert set(schemas) == set(cat.types)
    for name, schema in schemas.items():
        ours = cat.types[name].canonical
        theirs = json.dumps(_primitive_form(json.loads(schema.canonical_form)),
                            separators=(",", ":"))
        assert theirs == ours, name
        assert avro.schema.parse(ours).canonical_form == ours  # a fixed point for avro too


def test_crc64_avro_fingerprints_agree_little_endian():
    # the specification's test vector: fingerprint64("null") = 0x63dd24e7cc258f8a
    assert avro.schema.parse('"null"').fingerprint() == (0x63DD24E7CC258F8A).to_bytes(8, "little")
    assert bytes.fromhex(fastavro_fingerprint('"null"', "CRC-64-AVRO")) == (
        avro.schema.parse('"null"').fingerprint())
    # named types without logical types: avro's own fingerprint of the .avsc
    for path in sorted((SCHEMAS / "types").glob("*.avsc")):
        schema = json.loads(path.read_text())
        if schema["type"] != "enum":
            continue
        canonical = to_parsing_canonical_form(parse_schema(schema))
        assert avro.schema.parse(json.dumps(schema)).fingerprint() == bytes.fromhex(
            fastavro_fingerprint(canonical, "CRC-64-AVRO")), path.stem


def test_single_object_header_carries_the_crc64_avro_fingerprint():
    """The 8 bytes after C3 01 are the little-endian CRC-64-AVRO fingerprint (Avro spec)."""
    for name, etype in load_catalogue().types.items():
        expected = avro.schema.parse(etype.canonical).fingerprint("CRC-64-AVRO")
        assert etype.fingerprint == expected, (
            f"{name}: header fingerprint {etype.fingerprint.hex()} is not the little-endian "
            f"CRC-64-AVRO {expected.hex()}"
        )


def valid_examples() -> list[dict]:
    out = []
    for path in sorted(EXAMPLES.glob("*.valid.jsonl")):
        out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return out


def _record_from_avro(type_name: str, datum: dict) -> Record:
    env = datum["envelope"]
    return Record(type_name, env["event_id"], env["subject_id"], env["occurred_at"],
                  env["source"], datum["data"])


def test_registre_messages_decode_with_the_avro_reference_library(broker, keystore: KeyStore):
    examples = valid_examples()
    cat = load_catalogue()
    own = [o for o in examples if cat.types[o["type"]].origin == "registre"]
    with Publisher(broker, keystore) as pub:
        assert pub.publish_many([o for o in examples if o not in own]).rejected == []
    with Publisher(broker, keystore, allow_registre=True) as pub:
        assert pub.publish_many(own).rejected == []
    expected = {o["event_id"]: parse_event(o, allow_registre=True).to_json() for o in examples}

    schemas = avro_schemas()
    with LogReader(broker) as reader:
        raw = list(reader.read())
    assert len(raw) == len(examples)

    def lookup(ref, version):
        return keystore.keys_for_reading([ref]).get((ref, version))

    seen = {}
    for rec in raw:
        value = rec.value
        assert value[:2] == b"\xc3\x01"
        type_name = dict(rec.headers)[TYPE_HEADER].decode()
        assert value[2:10] == cat.types[type_name].fingerprint
        schema = schemas[type_name]
        body = io.BytesIO(value[10:])
        datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(body))
        assert body.tell() == len(value) - 10  # the whole body, nothing left over
        ours = decode(value)
        assert datum["envelope"]["event_id"] == ours.event_id
        assert datum["envelope"]["occurred_at"] == ours.occurred_at
        # avro writes back the very same bytes
        again = io.BytesIO()
        avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(again))
        assert again.getvalue() == value[10:]
        # what avro read decrypts to the original event
        revealed = reveal(_record_from_avro(type_name, datum), lookup).to_json()
        seen[revealed["event_id"]] = revealed
    assert seen == expected

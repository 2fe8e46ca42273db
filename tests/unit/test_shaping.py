"""The one-pass shaping of an event's data for fastavro (events.shaping), over every example."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastavro
import pytest

from events.catalogue import load_catalogue
from events.shaping import record_shape
from events.validation import parse_event

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
VALID = [json.loads(line) for path in sorted(EXAMPLES.glob("*.valid.jsonl"))
         for line in path.read_text(encoding="utf-8").splitlines()]


def _plain(value: Any) -> Any:
    """The data as plain dicts and lists (what fastavro is usually given)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sealed_as_marker(value: Any, sealer: Any) -> bytes:
    return b"sealed:" + str(value).encode()


def _write(schema: Any, data: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), data)
    return out.getvalue()


@pytest.mark.parametrize("obj", VALID, ids=[f"{o['type']}-{i}" for i, o in enumerate(VALID)])
def test_the_shaped_data_writes_the_bytes_of_the_plain_data_with_its_leaves_sealed(obj):
    catalogue = load_catalogue()
    etype = catalogue.types[obj["type"]]
    event = parse_event(obj, catalogue, allow_registre=True)
    data_schema = etype.schema["fields"][1]["type"]
    transforms = {f.dotted: _sealed_as_marker for f in etype.pii}
    shaped = record_shape(data_schema, catalogue.named_types, transforms)(event.data, None)
    expected = _plain(event.data)
    for f in etype.pii:  # what the deep copy then a set per leaf gave
        node = expected
        for part in f.path[1:-1]:
            node = node.get(part) if node is not None else None
        if node is not None and node.get(f.path[-1]) is not None:
            node[f.path[-1]] = _sealed_as_marker(node[f.path[-1]], None)
    assert _write(data_schema, shaped) == _write(data_schema, expected)


def test_a_record_in_a_union_is_named_and_an_array_is_a_list():
    catalogue = load_catalogue()
    etype = catalogue.types["ConnectionRecorded"]
    obj = next(o for o in VALID if o["type"] == "ConnectionRecorded" and o["data"].get("location"))
    event = parse_event(obj, catalogue)
    shaped = record_shape(etype.schema["fields"][1]["type"], catalogue.named_types,
                          {f.dotted: _sealed_as_marker for f in etype.pii})(event.data, None)
    name, location = shaped["location"]
    assert name == "registre.events.Location"
    assert location["latitude"].startswith(b"sealed:")
    consent = next(o for o in VALID if o["type"] == "ConsentGiven")
    given = catalogue.types["ConsentGiven"]
    shaped = record_shape(given.schema["fields"][1]["type"], catalogue.named_types, {})(
        parse_event(consent, catalogue).data, None)
    assert isinstance(shaped["purposes"], list)


def test_a_union_of_two_types_besides_null_is_refused():
    schema = {"type": "record", "name": "X", "fields": [
        {"name": "either", "type": ["null", "string", "long"]}]}
    with pytest.raises(ValueError, match="data.either: a union must be null and one other"):
        record_shape(schema, {}, {})

"""JSON Schemas of the events, generated from the Avro schemas of `schemas/` (the only source).

`event_schema(etype)` turns one event type into the JSON Schema of its canonical JSON form
(domain.md's envelope): records become objects with their required fields and no others,
unions with null become optional (and nullable) fields, enums become string enums, arrays keep
their minimum and uniqueness, ``uuid`` and ``timestamp-micros`` become strings of that format,
and a personal field (``"pii"``) is its plain type (a string or a number) on the way in, with
the schema's own ``allowed``, ``format``, ``range`` and ``const`` rules. The examples are the
lines of ``schemas/examples/<Type>.valid.jsonl``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from events.catalogue import Catalogue, EventType
from events.validation import MAX_STRING

Schema = dict[str, Any]
_FORMATS: dict[str, Schema] = {
    "email": {"format": "email"},
    "phone": {"pattern": r"^\+?[0-9][0-9 ().-]{4,22}$"},
    "iso_country": {"pattern": "^[A-Z]{2}$"},
    "subject_id": {"pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"},
    "ip": {"description": "an IPv4 or IPv6 address"},
}
TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_STRING}


def _text(spec: dict[str, Any]) -> Schema:
    out = dict(TEXT)
    if spec.get("allowed"):
        out["enum"] = list(spec["allowed"])
    out.update(_FORMATS.get(spec.get("format", ""), {}))
    return out


def _personal(spec: dict[str, Any]) -> Schema:
    if spec.get("plain") == "double":
        low, high = spec.get("range", (None, None))
        number: Schema = {"type": "number"}
        if low is not None:
            number.update(minimum=low, maximum=high)
        return number
    return _text(spec)


def convert(node: Any, spec: dict[str, Any], catalogue: Catalogue) -> Schema:
    """The JSON Schema of one Avro type; ``spec`` is the field that holds it."""
    if isinstance(node, list):  # ["null", X]: optional; null reads as absent
        inner = convert(next(n for n in node if n != "null"), spec, catalogue)
        return {"anyOf": [inner, {"type": "null"}]}
    if isinstance(node, str) and node in catalogue.named_types:
        node = catalogue.named_types[node]
    if "pii" in spec:
        return _personal(spec)
    kind = node.get("type") if isinstance(node, dict) else node
    logical = node.get("logicalType") if isinstance(node, dict) else None
    if logical == "uuid":
        return {"type": "string", "format": "uuid"}
    if logical == "timestamp-micros":
        return {"type": "string", "format": "date-time",
                "description": "RFC 3339 with an offset"}
    if kind == "string":
        return _text(spec)
    if kind == "boolean":
        return {"const": spec["const"]} if "const" in spec else {"type": "boolean"}
    if kind in ("int", "long"):
        bounds = {k: spec[k] for k in ("minimum", "maximum") if k in spec}
        return {"type": "integer", **bounds}
    if kind == "enum":
        return {"type": "string", "enum": list(node["symbols"])}
    if kind == "array":
        return {"type": "array", "items": convert(node["items"], {}, catalogue),
                "minItems": spec.get("min_items", 0), "uniqueItems": True}
    if kind == "record":
        return record(node, catalogue)
    raise ValueError(f"no JSON Schema for Avro type {kind!r}")


def record(node: dict[str, Any], catalogue: Catalogue) -> Schema:
    properties = {}
    for f in node["fields"]:
        prop = convert(f["type"], f, catalogue)
        if f.get("doc"):
            prop = {**prop, "description": f["doc"]}
        properties[f["name"]] = prop
    required = [f["name"] for f in node["fields"] if not isinstance(f["type"], list)]
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def event_schema(etype: EventType, catalogue: Catalogue) -> Schema:
    """The canonical JSON form of one event type (domain.md's envelope and its data)."""
    envelope = record(etype.schema["fields"][0]["type"], catalogue)["properties"]
    properties = {"event_id": envelope["event_id"], "type": {"const": etype.name},
                  "subject_id": envelope["subject_id"],
                  "occurred_at": {**envelope["occurred_at"], "description":
                                  "RFC 3339 instant with an offset (stored in UTC, to the µs)"},
                  "source": envelope["source"],
                  "data": record(etype.schema["fields"][1]["type"], catalogue)}
    return {"title": etype.name, "description": etype.doc, "type": "object",
            "properties": properties, "required": list(properties),
            "additionalProperties": False}


def examples(name: str) -> list[dict[str, Any]]:
    """The valid examples of ``schemas/examples/<name>.valid.jsonl``."""
    path = resources.files("schemas").joinpath("examples", f"{name}.valid.jsonl")
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def publishable(catalogue: Catalogue) -> list[EventType]:
    """The event types services publish (not the ledger's own)."""
    return [t for t in catalogue.types.values() if t.origin == "website"]

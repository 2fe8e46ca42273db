"""The event catalogue, read from the `.avsc` files in `schemas/` (the only source of truth).

Everything the code knows about an event type comes from here: its writer schema, its
fingerprint (CRC-64-AVRO of the parsing canonical form, as in Avro single-object encoding),
and which fields are personal (the `"pii"` attribute naming the category).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

NAMESPACE = "registre.events"
CATEGORIES = ("identity", "contact", "connection", "location")
MONTHLY_CATEGORIES = frozenset({"connection", "location"})

T = TypeVar("T")


@dataclass(frozen=True)
class PiiField:
    """A personal leaf field: where it is, which key category protects it, its plain type."""

    path: tuple[str, ...]  # e.g. ("data", "postal_address", "city")
    category: str
    plain: str  # "string" or "double"
    optional: bool

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class EventType:
    name: str
    doc: str
    origin: str  # "website" (published by services) or "registre" (the ledger's own facts)
    schema: dict[str, Any]  # fully expanded JSON schema, as in the .avsc plus inlined types
    parsed: Any  # fastavro parsed schema
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO
    pii: tuple[PiiField, ...]

    @property
    def data_fields(self) -> list[dict[str, Any]]:
        return self.schema["fields"][1]["type"]["fields"]


def _schema_files(folder: str) -> list[tuple[str, dict[str, Any]]]:
    root = resources.files("schemas").joinpath(folder)
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".avsc"):
            out.append((entry.name, json.loads(entry.read_text(encoding="utf-8"))))
    return out


def _fullname(schema: dict[str, Any], namespace: str) -> str:
    name = schema["name"]
    return name if "." in name else f"{schema.get('namespace', namespace)}.{name}"


def _expand(node: Any, named: dict[str, Any], seen: set[str], namespace: str) -> Any:
    """Inline every named-type reference at its first use (what canonical form needs)."""
    if isinstance(node, str):
        full = node if "." in node else f"{namespace}.{node}"
        if full in named:
            if full in seen:
                return full
            seen.add(full)
            return _expand(named[full], named, seen, namespace)
        return node
    if isinstance(node, list):
        return [_expand(n, named, seen, namespace) for n in node]
    if isinstance(node, dict):
        out = dict(node)
        if node.get("type") in ("record", "enum", "fixed"):
            full = _fullname(node, namespace)
            seen.add(full)
            out["name"] = full
            out.pop("namespace", None)
            ns = full.rsplit(".", 1)[0]
        else:
            ns = namespace
        if node.get("type") == "record":
            out["fields"] = [
                {**f, "type": _expand(f["type"], named, seen, ns)} for f in node["fields"]
            ]
        elif node.get("type") == "array":
            out["items"] = _expand(node["items"], named, seen, ns)
        elif isinstance(node.get("type"), (dict, list)):
            out["type"] = _expand(node["type"], named, seen, ns)
        return out
    return node


def _pii_fields(node: Any, path: tuple[str, ...], optional: bool) -> list[PiiField]:
    fields: list[PiiField] = []
    if isinstance(node, list):  # union with null
        for branch in node:
            if branch != "null":
                fields += _pii_fields(branch, path, True)
        return fields
    if isinstance(node, dict) and node.get("type") == "record":
        for f in node["fields"]:
            fpath = path + (f["name"],)
            if "pii" in f:
                if f["pii"] not in CATEGORIES:
                    raise ValueError(f"{'.'.join(fpath)}: unknown pii category {f['pii']!r}")
                fields.append(PiiField(fpath, f["pii"], f.get("plain", "string"),
                                       optional or isinstance(f["type"], list)))
            else:
                fields += _pii_fields(f["type"], fpath, optional)
    return fields


@dataclass(frozen=True)
class Catalogue:
    types: dict[str, EventType]
    by_fingerprint: dict[bytes, EventType]
    named_types: dict[str, dict[str, Any]]

    def get(self, name: str) -> EventType:
        return self.types[name]


@cache
def load_catalogue() -> Catalogue:
    """Parse every schema once; raise on a schema that does not parse."""
    named: dict[str, dict[str, Any]] = {}
    for _, schema in _schema_files("types"):
        named[_fullname(schema, NAMESPACE)] = schema
    types: dict[str, EventType] = {}
    for filename, schema in _schema_files("events"):
        expanded = _expand(schema, named, set(), NAMESPACE)
        parsed = fastavro.parse_schema(expanded)
        canonical = to_parsing_canonical_form(parsed)
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))  # already little-endian
        name = schema["name"]
        if filename != f"{name}.avsc":
            raise ValueError(f"schemas/events/{filename}: record name {name!r} must match the file")
        types[name] = EventType(
            name=name,
            doc=schema.get("doc", ""),
            origin=schema.get("origin", "website"),
            schema=expanded,
            parsed=parsed,
            canonical=canonical,
            fingerprint=fp,
            pii=tuple(_pii_fields(expanded["fields"][1]["type"], ("data",), False)),
        )
    return Catalogue(types, {t.fingerprint: t for t in types.values()}, named)


def per_type(build: Callable[[EventType], T]) -> Callable[[EventType], T]:
    """``build`` run once per event type, its result reused: for what derives from a schema alone.

    The hot paths (validation, encoding, headers) compile a plan from each type's schema the
    first time they meet it. Types never change once loaded; the memo holds on to each type, so
    its identity is a safe key.
    """
    memo: dict[int, tuple[EventType, T]] = {}

    def get(etype: EventType) -> T:
        hit = memo.get(id(etype))
        if hit is None:
            hit = memo[id(etype)] = (etype, build(etype))
        return hit[1]

    return get


def load_topics() -> list[dict[str, Any]]:
    """The topic manifest (`schemas/topics.json`)."""
    text = resources.files("schemas").joinpath("topics.json").read_text(encoding="utf-8")
    return json.loads(text)["topics"]


def topic_of(role: str) -> dict[str, Any]:
    """The manifest's entry of the topic of that role (name, partitions, retention...)."""
    for t in load_topics():
        if t["role"] == role:
            return t
    raise KeyError(role)


def topic_name(role: str) -> str:
    return topic_of(role)["name"]

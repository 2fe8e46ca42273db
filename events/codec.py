"""The one codec pipeline: (validated) Event -> encrypt personal fields -> Avro, and back.

Messages use Avro single-object encoding: ``C3 01`` + the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema + the Avro binary body, so any reader can tell which schema
in ``schemas/`` wrote a message. Personal leaves travel as sealed bytes (see `events.crypto`).

Encoding follows a plan worked out once per type: shape the data as fastavro writes it, each
personal leaf present sealed on the way (`events.shaping`, `events.sealing`), then write it
with fastavro. Decoding reads with fastavro too.
"""

from __future__ import annotations

import io
import json
import re
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import fastavro

from events.catalogue import (
    MONTHLY_CATEGORIES,
    Catalogue,
    EventType,
    PiiField,
    load_catalogue,
    per_type,
)
from events.crypto import associated_data, open_sealed, sealed_version
from events.keys import KeyRef, key_month, key_period
from events.model import Event
from events.sealing import EventSealer, KeyRing
from events.shaping import Shape, record_shape

MAGIC = b"\xc3\x01"
MAX_MESSAGE = 1 << 20  # larger values are refused on both sides


class DecodeError(ValueError):
    """A message that is not a registre event (truncated, unknown schema, too large...)."""


class Record(NamedTuple):
    """A decoded message before decryption: personal leaves are still sealed bytes. A named
    tuple: one is built per event decoded (a frozen dataclass's ``__init__`` costs ~0.6 us
    more)."""

    type: str
    event_id: str
    subject_id: str
    occurred_at: datetime
    source: str
    data: dict[str, Any]

    def sealed_fields(self, etype: EventType) -> list[tuple[PiiField, bytes]]:
        out = []
        for f in etype.pii:
            value = _get(self.data, f.path[1:])
            if value is not None:
                out.append((f, value))
        return out


_MAPPINGS = (dict, MappingProxyType)  # the mappings events hold; others go through the ABC


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if type(data) not in _MAPPINGS and not isinstance(data, Mapping):
            return None
        data = data.get(part)
        if data is None:
            return None
    return data


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_text(value: str) -> str:
    """What fastavro's uuid logical type and ``str`` make of a uuid-typed string (the
    canonical form; ValueError if it is no uuid), without building a UUID when it is one."""
    return value if _CANONICAL_UUID.fullmatch(value) else str(uuid.UUID(value))


def _uuids_as_str(value: Any) -> Any:
    """The JSON form of what was read: uuid-typed strings in their canonical form."""
    if isinstance(value, Mapping):
        return {k: _uuids_as_str(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_uuids_as_str(v) for v in value]
    return str(value) if isinstance(value, uuid.UUID) else value


def _without_uuid(node: Any) -> Any:
    """The schema with its uuid logical types dropped (same binary encoding: strings)."""
    if isinstance(node, list):
        return [_without_uuid(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if not (k == "logicalType" and v == "uuid")}
    for key in ("type", "items", "values"):
        if key in out:
            out[key] = _without_uuid(out[key])
    if "fields" in out:
        out["fields"] = [_without_uuid(f) for f in out["fields"]]
    return out


@dataclass(frozen=True)
class _Reader:
    """How to read one event type: most types have no uuid in their data, and are read with
    a schema whose uuids come as plain strings (only the event id is then checked); the few
    others are read as written, uuids as UUIDs, turned into strings."""

    parsed: Any
    data_uuids: bool


_READERS: dict[bytes, _Reader] = {}


def _reader(etype: EventType) -> _Reader:
    found = _READERS.get(etype.fingerprint)
    if found is None:
        data = next(f for f in etype.schema["fields"] if f["name"] == "data")
        uuids = '"uuid"' in json.dumps(data)
        found = _READERS[etype.fingerprint] = _Reader(
            etype.parsed if uuids else fastavro.parse_schema(_without_uuid(etype.schema)),
            uuids)
    return found


_PLAIN_DOUBLE = struct.Struct(">d")
Transform = Callable[[Any, "EventSealer | None"], bytes]  # seals one leaf of one event


def plain_bytes(field: PiiField, value: Any) -> bytes:
    """What is sealed for a personal leaf (the sealing transforms below inline it)."""
    return _PLAIN_DOUBLE.pack(value) if field.plain == "double" else str(value).encode()


def plain_value(field: PiiField, raw: bytes) -> Any:
    return _PLAIN_DOUBLE.unpack(raw)[0] if field.plain == "double" else raw.decode()


@dataclass(frozen=True)
class _Plan:
    """How to encode one event type, worked out once from its schema."""

    shape: Shape  # the data as fastavro writes it, each personal leaf sealed
    # each key category the type uses, with the paths (under "data") of its personal leaves
    categories: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]
    monthly: bool  # whether some of those categories have monthly keys


# Sealing one leaf, ``seal(sealer, category, path, plaintext)``, under a module-level name that
# the encoding looks up at each call, so that bench/publish.py can time it.
seal = EventSealer.seal


def _sealing(field: PiiField) -> Transform:
    """The transform that seals a personal leaf (its `plain_bytes`) under its category's key."""
    category, path = field.category, field.dotted.encode()
    if field.plain == "double":
        def seal_number(value: Any, sealer: EventSealer) -> bytes:
            return seal(sealer, category, path, _PLAIN_DOUBLE.pack(value))

        return seal_number

    def seal_text(value: Any, sealer: EventSealer) -> bytes:
        return seal(sealer, category, path, str(value).encode())

    return seal_text


def _build_plan(etype: EventType) -> _Plan:
    sealing = {f.dotted: _sealing(f) for f in etype.pii}
    paths: dict[str, list[tuple[str, ...]]] = {}
    for f in etype.pii:
        paths.setdefault(f.category, []).append(f.path[1:])
    return _Plan(
        shape=record_shape(etype.schema["fields"][1]["type"], load_catalogue().named_types,
                           sealing),
        categories=tuple((c, tuple(p)) for c, p in paths.items()),
        monthly=any(c in MONTHLY_CATEGORIES for c in paths),
    )


_plan = per_type(_build_plan)


def _present(data: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> bool:
    for path in paths:
        if _get(data, path) is not None:
            return True
    return False


def key_refs(event: Event, catalogue: Catalogue | None = None) -> set[KeyRef]:
    """The data keys needed to encrypt the event's personal fields."""
    plan = _plan((catalogue or load_catalogue()).types[event.type])
    month = key_month(event.occurred_at) if plan.monthly else ""
    return {
        KeyRef(event.subject_id, category, month if category in MONTHLY_CATEGORIES else "")
        for category, paths in plan.categories
        if _present(event.data, paths)
    }


def encode(
    event: Event,
    keys: Mapping[KeyRef, tuple[int, bytes]] | KeyRing,
    catalogue: Catalogue | None = None,
) -> bytes:
    """Seal personal fields with the subject's keys and write single-object Avro.

    A personal field whose key is absent from ``keys`` (erased subject) is written REDACTED.
    Encoding many events, pass one `KeyRing` of their keys: each key is prepared once.
    """
    etype = (catalogue or load_catalogue()).types[event.type]
    plan = _plan(etype)
    sealer = None
    if plan.categories:
        ring = keys if isinstance(keys, KeyRing) else KeyRing(keys)
        month = key_month(event.occurred_at) if plan.monthly else ""
        sealer = EventSealer(ring, event.event_id, event.subject_id, event.type, month)
    record = {
        "envelope": {
            "event_id": event.event_id,
            "subject_id": event.subject_id,
            "occurred_at": event.occurred_at,
            "source": event.source,
        },
        "data": plan.shape(event.data, sealer),
    }
    out = io.BytesIO()
    out.write(MAGIC + etype.fingerprint)
    try:
        fastavro.schemaless_writer(out, etype.parsed, record)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{event.type}: a value does not fit the schema ({type(exc).__name__})") from None
    return out.getvalue()


def event_type_of(value: bytes, catalogue: Catalogue | None = None) -> EventType:
    if len(value) > MAX_MESSAGE:
        raise DecodeError(f"message of {len(value)} bytes exceeds {MAX_MESSAGE}")
    if len(value) < 10 or value[:2] != MAGIC:
        raise DecodeError("not Avro single-object encoding (bad marker)")
    etype = (catalogue or load_catalogue()).by_fingerprint.get(value[2:10])
    if etype is None:
        raise DecodeError(f"unknown schema fingerprint {value[2:10].hex()}")
    return etype


def decode(value: bytes, catalogue: Catalogue | None = None) -> Record:
    """Read a message into a Record (no decryption). Raises DecodeError on anything else."""
    etype = event_type_of(value, catalogue)
    reader = _reader(etype)
    buf = io.BytesIO(value)
    buf.seek(10)
    try:
        rec = fastavro.schemaless_reader(buf, reader.parsed, None)
        env, data = rec["envelope"], rec["data"]
        event_id = str(env["event_id"]) if reader.data_uuids else _uuid_text(env["event_id"])
    except Exception as exc:  # fastavro raises several types on truncated input
        raise DecodeError(f"{etype.name}: body does not decode ({type(exc).__name__})") from None
    if buf.tell() != len(value):
        raise DecodeError(f"{etype.name}: {len(value) - buf.tell()} trailing bytes")
    return Record(etype.name, event_id, env["subject_id"], env["occurred_at"], env["source"],
                  _uuids_as_str(data) if reader.data_uuids else data)


KeyLookup = Callable[[KeyRef, int], bytes | None]


def open_field(
    record_type: str, event_id: str, subject_id: str, occurred_at: datetime,
    field: PiiField, sealed: bytes, lookup: KeyLookup,
) -> Any:
    """Decrypt one sealed leaf; None when its key is gone or the ciphertext is not bound here."""
    version = sealed_version(sealed)
    if version is None:
        return None
    ref = KeyRef(subject_id, field.category, key_period(field.category, occurred_at))
    key = lookup(ref, version)
    if key is None:
        return None
    aad = associated_data(event_id, subject_id, record_type, field.dotted, version)
    raw = open_sealed(key, sealed, aad)
    return None if raw is None else plain_value(field, raw)


def reveal(record: Record, lookup: KeyLookup, catalogue: Catalogue | None = None) -> Event:
    """Decrypt every personal leaf it can; unreadable ones become None (absent)."""
    etype = (catalogue or load_catalogue()).types[record.type]
    data = _copy(record.data)
    for f, sealed in record.sealed_fields(etype):
        value = open_field(record.type, record.event_id, record.subject_id, record.occurred_at,
                           f, sealed, lookup)
        _set(data, f.path[1:], value)
    return Event(record.event_id, record.type, record.subject_id, record.occurred_at,
                 record.source, data)


def lookup_from(keys: Mapping[tuple[KeyRef, int], bytes]) -> KeyLookup:
    return lambda ref, version: keys.get((ref, version))

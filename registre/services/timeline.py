"""The case-bound timeline: every event of one subject in log order, decrypted where it can be.

A restricted read: the access log gets (reader, subject, case) and is committed before any
personal field is decrypted. Each personal field shows its clear value where its key exists;
where the key was destroyed it shows ``{"destroyed": true, "destroyed_at", "reason",
"category"}`` from the tombstones (when and why, never what); a field written redacted
because the subject was already erased shows ``{"redacted": true, "category"}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg

from events.catalogue import Catalogue, PiiField, load_catalogue
from events.codec import KeyLookup, Record, open_field
from events.crypto import sealed_version
from events.keys import KeyRef, key_period
from events.keystore import KeyStore
from events.model import format_instant
from processors.rules.timeutil import ensure_utc
from projections.access_log import checked_case, record_access
from registre.services.audit import UnknownSubject
from registre.services.export import key_lookup
from registre.services.replay import Replayed, subject_log

Doc = dict[str, Any]
Destroyed = dict[tuple[str, str], tuple[datetime, str]]


def destroyed_keys(conn: psycopg.Connection, subject_id: str) -> Destroyed:
    """(category, period) -> (destroyed at, reason) of the subject's destroyed keys."""
    rows = conn.execute(
        "SELECT category, period, destroyed_at, reason FROM tombstones.destroyed_keys"
        " WHERE subject_id = %s", (subject_id,)).fetchall()
    return {(c, p): (at, reason) for c, p, at, reason in rows}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _shown(record: Record, field: PiiField, sealed: bytes, lookup: KeyLookup,
           destroyed: Destroyed) -> Any:
    """A personal leaf as the reader sees it: its value, or why it cannot be read."""
    version = sealed_version(sealed)
    if version is None:
        return {"redacted": True, "category": field.category}
    value = open_field(record.type, record.event_id, record.subject_id, record.occurred_at,
                       field, sealed, lookup)
    if value is not None:
        return value
    period = key_period(field.category, record.occurred_at)
    gone = destroyed.get((field.category, period))
    if gone is not None and lookup(KeyRef(record.subject_id, field.category, period),
                                   version) is None:
        return {"destroyed": True, "destroyed_at": format_instant(gone[0]),
                "reason": gone[1], "category": field.category}
    return {"unreadable": True, "category": field.category}


def _entry(item: Replayed, lookup: KeyLookup, destroyed: Destroyed,
           catalogue: Catalogue, seen: set[str]) -> Doc:
    record = item.record
    duplicate = record.event_id in seen
    seen.add(record.event_id)
    data = _plain(record.data)
    for field, sealed in record.sealed_fields(catalogue.types[record.type]):
        target = data
        for part in field.path[1:-1]:
            target = target[part]
        target[field.path[-1]] = _shown(record, field, sealed, lookup, destroyed)
    return {"partition": item.partition, "offset": item.offset, "event_id": record.event_id,
            "type": record.type, "occurred_at": format_instant(record.occurred_at),
            "source": record.source, "duplicate": duplicate, "data": data}


def timeline(bootstrap: str, conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
             case_ref: str | None, reader: str, now: datetime,
             catalogue: Catalogue | None = None) -> Doc:
    """Every event of the subject, in log order; the read is recorded first (case required)."""
    case = checked_case(case_ref)
    catalogue = catalogue or load_catalogue()
    found = subject_log(bootstrap, subject_id, catalogue=catalogue)
    if not found:
        raise UnknownSubject(f"{subject_id}: no such subject in the ledger")
    access_id = record_access(conn, reader, subject_id, case, "timeline",
                              ensure_utc(now, "now"))
    lookup = key_lookup(keystore, [i.record for i in found], catalogue)
    destroyed = destroyed_keys(conn, subject_id)
    seen: set[str] = set()
    return {"subject_id": subject_id, "case_ref": case, "access_id": access_id,
            "generated_at": format_instant(now),
            "events": [_entry(i, lookup, destroyed, catalogue, seen) for i in found]}

"""Validation of events in their JSON form, driven by the schemas and the rules of domain.md.

Every rejection names the field (``data.email``) and why, in one line.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pycountry
from email_validator import EmailNotValidError, validate_email

from events.catalogue import Catalogue, load_catalogue
from events.model import Event

MAX_STRING = 1000
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ().-]{4,22}$")
_ENVELOPE = ("event_id", "type", "subject_id", "occurred_at", "source", "data")


class InvalidEvent(ValueError):
    """An event that must not be published: ``field`` says where, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_instant(value: Any, field: str) -> datetime:
    """An RFC 3339 instant with an explicit offset."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidEvent(field, "expected an RFC 3339 instant with an offset, such as "
                                  "2026-03-01T09:30:00+01:00 or 2026-03-01T08:30:00Z")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(field, f"not an RFC 3339 instant: {value[:40]!r}") from None
    if at.tzinfo is None:
        raise InvalidEvent(field, "instant has no UTC offset (add Z or +01:00)")
    try:
        at.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(field, "instant out of range once in UTC") from None
    return at


def _text(value: Any, field: str) -> str:
    """A non-empty string that UTF-8 can encode (no lone surrogate from a JSON \\ud800)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(field, "expected a non-empty string")
    if len(value) > MAX_STRING:
        raise InvalidEvent(field, f"longer than {MAX_STRING} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(field, "not valid Unicode (lone surrogate)") from None
    return value


def _name(key: str) -> str:
    """A field name fit for a one-line message, even when it holds a lone surrogate."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_format(fmt: str, value: str, field: str) -> None:
    if fmt == "email":
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError:
            raise InvalidEvent(field, "not a well-formed email address") from None
    elif fmt == "iso_country":
        if len(value) != 2 or not value.isupper() or \
                pycountry.countries.get(alpha_2=value) is None:
            raise InvalidEvent(field, "not an ISO 3166-1 alpha-2 country code")
    elif fmt == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise InvalidEvent(field, "not an IPv4 or IPv6 address") from None
    elif fmt == "phone":
        if not _PHONE_RE.match(value):
            raise InvalidEvent(field, "not a phone number")
    elif fmt == "subject_id":
        if not _SUBJECT_RE.match(value):
            raise InvalidEvent(field, "expected an opaque id of letters, digits and ._:-")
        if "@" in value or _is_ip(value):
            raise InvalidEvent(field, "must be pseudonymous, not an email or an IP")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _check_pii(spec: dict[str, Any], value: Any, field: str) -> Any:
    if spec.get("plain") == "double":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidEvent(field, "expected a number")
        low, high = spec.get("range", (float("-inf"), float("inf")))
        if not low <= value <= high:
            raise InvalidEvent(field, f"must be between {low} and {high}")
        return float(value)
    _text(value, field)
    if "allowed" in spec and value not in spec["allowed"]:
        raise InvalidEvent(field, f"expected one of {', '.join(spec['allowed'])}")
    if "format" in spec:
        _check_format(spec["format"], value, field)
    return value


def _check(schema: Any, spec: dict[str, Any], value: Any, field: str) -> Any:
    """Check one value against its (expanded) schema; return it in the form the codec wants."""
    if isinstance(schema, list):  # ["null", X]
        if value is None:
            return None
        return _check(next(s for s in schema if s != "null"), spec, value, field)
    if isinstance(schema, str) and schema in load_catalogue().named_types:
        # a named type used a second time is a reference (the first use was inlined)
        schema = load_catalogue().named_types[schema]
    if value is None:
        raise InvalidEvent(field, "is required")
    if "pii" in spec:
        return _check_pii(spec, value, field)
    kind = schema.get("type") if isinstance(schema, dict) else schema
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "uuid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise InvalidEvent(field, "not a UUID") from None
    if logical == "timestamp-micros":
        return parse_instant(value, field)
    if kind == "string":
        _text(value, field)
        if "format" in spec:
            _check_format(spec["format"], value, field)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidEvent(field, "expected true or false")
        if "const" in spec and value != spec["const"]:
            raise InvalidEvent(field, f"must be {str(spec['const']).lower()}")
        return value
    if kind == "enum":
        if value not in schema["symbols"]:
            raise InvalidEvent(field, f"expected one of {', '.join(schema['symbols'])}")
        return value
    if kind == "array":
        if not isinstance(value, list):
            raise InvalidEvent(field, "expected a list")
        if len(value) < spec.get("min_items", 0):
            raise InvalidEvent(field, f"needs at least {spec['min_items']} item(s)")
        items = [_check(schema["items"], {}, v, f"{field}[{i}]") for i, v in enumerate(value)]
        if len({repr(i) for i in items}) != len(items):
            raise InvalidEvent(field, "has duplicates")
        return items
    if kind == "record":
        return _check_record(schema, value, field)
    raise InvalidEvent(field, f"unsupported schema type {kind!r}")  # pragma: no cover


def _check_record(schema: dict[str, Any], value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(field, "expected an object")
    names = {f["name"] for f in schema["fields"]}
    for key in value:
        if key not in names:
            raise InvalidEvent(f"{field}.{_name(key)}", "unknown field")
    out = {}
    for f in schema["fields"]:
        out[f["name"]] = _check(f["type"], f, value.get(f["name"]), f"{field}.{f['name']}")
    return out


def parse_event(
    obj: Any, catalogue: Catalogue | None = None, allow_registre: bool = False
) -> Event:
    """Validate one event in canonical JSON form and return it as an Event."""
    catalogue = catalogue or load_catalogue()
    if not isinstance(obj, Mapping):
        raise InvalidEvent("event", "expected a JSON object")
    for key in obj:
        if key not in _ENVELOPE:
            raise InvalidEvent(_name(str(key)), "unknown field")
    for key in _ENVELOPE:
        if obj.get(key) is None:
            raise InvalidEvent(key, "is required")
    kind = obj["type"]
    if not isinstance(kind, str) or kind not in catalogue.types:
        raise InvalidEvent("type", f"unknown event type {str(kind)[:40]!r}")
    etype = catalogue.types[kind]
    if etype.origin == "registre" and not allow_registre:
        raise InvalidEvent("type", f"{kind} is appended by registre itself, not published")
    envelope = etype.schema["fields"][0]["type"]
    checked = {}
    for f in envelope["fields"]:
        checked[f["name"]] = _check(f["type"], f, obj[f["name"]], f["name"])
    data = _check_record(etype.schema["fields"][1]["type"], obj["data"], "data")
    return Event(
        event_id=checked["event_id"],
        type=kind,
        subject_id=checked["subject_id"],
        occurred_at=checked["occurred_at"],
        source=checked["source"],
        data=data,
    )

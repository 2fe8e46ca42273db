"""Validation of events in their JSON form, driven by the schemas and the rules of domain.md.

Every rejection names the field (``data.email``) and why, in one line.

Each event type's schema is compiled once into a checker per field (`_compile`), which knows
its field's name, rules and the form the codec wants, so that checking an event does not
interpret the schema again. The checkers build the event's data already frozen (read-only
mappings and tuples), so that `Event` takes it without another copy.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import pycountry
from email_validator import EmailNotValidError, validate_email

from events.catalogue import Catalogue, EventType, load_catalogue, per_type
from events.model import Event, format_instant

MAX_STRING = 1000
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)  # no registre event happened before
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of the publisher's clock an event may be
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ().-]{4,22}$")
_ENVELOPE = ("event_id", "type", "subject_id", "occurred_at", "source", "data")
# Shortcuts to the exact answers of slower checks (see where they are used).
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}")
_NOT_IP_CHAR = re.compile(r"[^0-9A-Fa-f.:%]")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # an Avro int
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")  # an unquoted ASCII local part
_EMAIL_MAX = 254  # characters in an address, as email_validator counts an ASCII one
_ARRAY_ITEMS_COMPILED = 64  # item checkers kept per array field (their names hold the index)

Checker = Callable[[Any], Any]
"""Checks one value (None when absent) and returns it in the form the codec wants."""


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
    if not isinstance(value, str) or not value or value.isspace():  # blank once stripped
        raise InvalidEvent(field, "expected a non-empty string")
    if len(value) > MAX_STRING:
        raise InvalidEvent(field, f"longer than {MAX_STRING} characters")
    if "\x00" in value:
        raise InvalidEvent(field, "holds a NUL character (U+0000), which no text column stores")
    if not value.isascii():  # ASCII always encodes
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent(field, "not valid Unicode (lone surrogate)") from None
    return value


def _name(key: str) -> str:
    """A field name fit for a one-line message, even when it holds a lone surrogate."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


# --------------------------------------------------------------------------- formats


def _email(value: str, field: str) -> None:
    if _plain_email(value):
        return
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidEvent(field, "not a well-formed email address") from None


def _plain_email(value: str) -> bool:
    """True for an address that `validate_email` accepts, known without it for most: ASCII,
    at most 254 characters, a dot-atom local part (RFC 5322) and a domain already accepted
    (each domain is checked once). False says nothing: `validate_email` decides."""
    local, _, domain = value.partition("@")
    return (len(value) <= _EMAIL_MAX and value.isascii() and _DOT_ATOM.fullmatch(local)
            is not None and "@" not in domain and _good_domain(domain))


@lru_cache(maxsize=4096)
def _good_domain(domain: str) -> bool:
    """Whether `validate_email` accepts this domain (the local part is checked apart)."""
    try:
        validate_email(f"a@{domain}", check_deliverability=False)
        return True
    except EmailNotValidError:
        return False


@lru_cache(maxsize=1024)
def _is_country(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


def _iso_country(value: str, field: str) -> None:
    if len(value) != 2 or not value.isupper() or not _is_country(value):
        raise InvalidEvent(field, "not an ISO 3166-1 alpha-2 country code")


def _ip(value: str, field: str) -> None:
    if not _is_ip(value):
        raise InvalidEvent(field, "not an IPv4 or IPv6 address")


def _phone(value: str, field: str) -> None:
    if not _PHONE_RE.match(value):
        raise InvalidEvent(field, "not a phone number")


def _subject_id(value: str, field: str) -> None:
    if not _SUBJECT_RE.match(value):
        raise InvalidEvent(field, "expected an opaque id of letters, digits and ._:-")
    if "@" in value or _is_ip(value):
        raise InvalidEvent(field, "must be pseudonymous, not an email or an IP")


_FORMATS: dict[str, Callable[[str, str], None]] = {
    "email": _email, "iso_country": _iso_country, "ip": _ip, "phone": _phone,
    "subject_id": _subject_id,
}


def check_format(fmt: str, value: str, field: str) -> None:
    """Check ``value`` against a named format of the schemas (email, ip, subject_id...)."""
    check = _FORMATS.get(fmt)
    if check is not None:
        check(value, field)


def _is_ip(value: str) -> bool:
    """What `ipaddress.ip_address` accepts, answered at once for most values.

    A dotted quad of decimal octets is an IPv4 address; a string with a character no address
    can hold (anything but hex digits, dots, colons and an IPv6 scope's %) is not one.
    """
    if _IPV4.fullmatch(value):
        return True
    if _NOT_IP_CHAR.search(value) and "%" not in value:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- compiled checkers


def _compile(schema: Any, spec: dict[str, Any], field: str) -> Checker:
    """The checker of one value of (expanded) ``schema``; ``spec`` is its field's definition."""
    if isinstance(schema, list):  # ["null", X]
        inner = _compile(next(s for s in schema if s != "null"), spec, field)

        def check_optional(value: Any) -> Any:
            return None if value is None else inner(value)

        return check_optional
    named = load_catalogue().named_types
    if isinstance(schema, str) and schema in named:
        # a named type used a second time is a reference (the first use was inlined)
        schema = named[schema]
    if "pii" in spec:
        return _pii(spec, field)
    kind = schema.get("type") if isinstance(schema, dict) else schema
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "uuid":
        return _uuid(field)
    if logical == "timestamp-micros":
        return _instant(field)
    if kind == "string":
        return _string(spec.get("format"), field)
    if kind == "boolean":
        return _boolean(spec, field)
    if kind == "int":
        return _integer(spec, field)
    if kind == "enum":
        return _enum(schema["symbols"], field)
    if kind == "array":
        return _array(schema, spec, field)
    if kind == "record":
        return _record(schema, field)
    return _unsupported(kind, field)  # pragma: no cover


def _required(field: str) -> InvalidEvent:
    return InvalidEvent(field, "is required")


def _pii(spec: dict[str, Any], field: str) -> Checker:
    if spec.get("plain") == "double":
        low, high = spec.get("range", (float("-inf"), float("inf")))
        out_of_range = f"must be between {low} and {high}"

        def check_number(value: Any) -> float:
            if value is None:
                raise _required(field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidEvent(field, "expected a number")
            if not low <= value <= high:
                raise InvalidEvent(field, out_of_range)
            return float(value)

        return check_number
    allowed = spec.get("allowed")
    not_allowed = f"expected one of {', '.join(allowed)}" if allowed is not None else ""
    fmt = _FORMATS.get(spec.get("format", ""))

    def check_personal_text(value: Any) -> str:
        if value is None:
            raise _required(field)
        _text(value, field)
        if allowed is not None and value not in allowed:
            raise InvalidEvent(field, not_allowed)
        if fmt is not None:
            fmt(value, field)
        return value

    return check_personal_text


def _uuid(field: str) -> Checker:
    def check_uuid(value: Any) -> str:
        if value is None:
            raise _required(field)
        if type(value) is str and _CANONICAL_UUID.fullmatch(value):
            return value  # already what str(uuid.UUID(value)) gives
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise InvalidEvent(field, "not a UUID") from None

    return check_uuid


def _instant(field: str) -> Checker:
    def check_instant(value: Any) -> datetime:
        if value is None:
            raise _required(field)
        return parse_instant(value, field)

    return check_instant


def _string(fmt_name: str | None, field: str) -> Checker:
    fmt = _FORMATS.get(fmt_name or "")

    def check_string(value: Any) -> str:
        if value is None:
            raise _required(field)
        _text(value, field)
        if fmt is not None:
            fmt(value, field)
        return value

    return check_string


def _boolean(spec: dict[str, Any], field: str) -> Checker:
    has_const, const = "const" in spec, spec.get("const")
    not_const = f"must be {str(const).lower()}"

    def check_boolean(value: Any) -> bool:
        if value is None:
            raise _required(field)
        if not isinstance(value, bool):
            raise InvalidEvent(field, "expected true or false")
        if has_const and value != const:
            raise InvalidEvent(field, not_const)
        return value

    return check_boolean


def _integer(spec: dict[str, Any], field: str) -> Checker:
    """A whole number (not a boolean, not 1.0), within the field's "minimum" and "maximum"
    (by default the range of an Avro int, 32 bits)."""
    low, high = spec.get("minimum", _INT_MIN), spec.get("maximum", _INT_MAX)

    def check_integer(value: Any) -> int:
        if value is None:
            raise _required(field)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidEvent(field, "expected a whole number")
        if value < low:
            raise InvalidEvent(field, f"must be at least {low}")
        if value > high:
            raise InvalidEvent(field, f"must be at most {high}")
        return value

    return check_integer


def _enum(symbols: list[str], field: str) -> Checker:
    expected = f"expected one of {', '.join(symbols)}"

    def check_enum(value: Any) -> Any:
        if value is None:
            raise _required(field)
        if value not in symbols:
            raise InvalidEvent(field, expected)
        return value

    return check_enum


def _array(schema: dict[str, Any], spec: dict[str, Any], field: str) -> Checker:
    min_items = spec.get("min_items", 0)
    items_schema = schema["items"]
    kind = items_schema.get("type") if isinstance(items_schema, dict) else items_schema
    named = load_catalogue().named_types
    if isinstance(kind, str) and kind in named:
        kind = named[kind].get("type")
    textual = kind in ("string", "enum")  # items compare as strings: a set finds duplicates
    # an item's field name holds its index ("data.purposes[1]"): one checker per position,
    # compiled when first needed (the first few kept)
    at: dict[int, Checker] = {}

    def item_checker(i: int) -> Checker:
        check = at.get(i)
        if check is None:
            check = _compile(items_schema, {}, f"{field}[{i}]")
            if i < _ARRAY_ITEMS_COMPILED:
                at[i] = check
        return check

    def check_array(value: Any) -> tuple[Any, ...]:
        if value is None:
            raise _required(field)
        if not isinstance(value, list):
            raise InvalidEvent(field, "expected a list")
        if len(value) < min_items:
            raise InvalidEvent(field, f"needs at least {spec['min_items']} item(s)")
        items = tuple(item_checker(i)(v) for i, v in enumerate(value))
        distinct = len(set(items)) if textual else len({repr(i) for i in items})
        if distinct != len(items):
            raise InvalidEvent(field, "has duplicates")
        return items

    return check_array


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _record(schema: dict[str, Any], field: str) -> Checker:
    names = {f["name"] for f in schema["fields"]}
    fields = [(f["name"], _compile(f["type"], f, f"{field}.{f['name']}"))
              for f in schema["fields"]]

    def check_record(value: Any) -> Mapping[str, Any]:
        if value is None:
            raise _required(field)
        if not _is_mapping(value):
            raise InvalidEvent(field, "expected an object")
        for key in value:
            if key not in names:
                raise InvalidEvent(f"{field}.{_name(key)}", "unknown field")
        get = value.get
        return MappingProxyType({name: check(get(name)) for name, check in fields})

    return check_record


def _unsupported(kind: Any, field: str) -> Checker:  # pragma: no cover
    def check_unsupported(value: Any) -> Any:
        if value is None:
            raise _required(field)
        raise InvalidEvent(field, f"unsupported schema type {kind!r}")

    return check_unsupported


# --------------------------------------------------------------------------- events


def _build_event_checker(etype: EventType) -> Callable[[Mapping[str, Any], str], Event]:
    """The checker of a whole event of that type (its envelope already known complete)."""
    envelope = [(f["name"], _compile(f["type"], f, f["name"]))
                for f in etype.schema["fields"][0]["type"]["fields"]]
    check_data = _record(etype.schema["fields"][1]["type"], "data")

    def check_event(obj: Mapping[str, Any], kind: str) -> Event:
        checked = {name: check(obj[name]) for name, check in envelope}
        return Event.from_validated(
            event_id=checked["event_id"],
            type=kind,
            subject_id=checked["subject_id"],
            occurred_at=checked["occurred_at"],
            source=checked["source"],
            data=check_data(obj["data"]),
        )

    return check_event


_event_checker = per_type(_build_event_checker)


def check_occurred_at(event: Event, now: datetime | None) -> Event:
    """Refuse an instant before 1990 or, given the publisher's clock, more than five minutes
    after it: a service's clock is not trusted beyond that (domain.md, "Time and trust")."""
    latest = None if now is None else now + CLOCK_SKEW
    if event.occurred_at < EARLIEST or (latest is not None and event.occurred_at > latest):
        bound = ("5 minutes after the publisher's clock"
                 f" ({format_instant(latest)})" if latest is not None else "now")
        raise InvalidEvent("occurred_at", f"must lie between {format_instant(EARLIEST)} and"
                                          f" {bound}")
    return event


def parse_event(
    obj: Any, catalogue: Catalogue | None = None, allow_registre: bool = False,
    now: datetime | None = None,
) -> Event:
    """Validate one event in canonical JSON form and return it as an Event.

    ``now`` is the publisher's clock: an event dated more than five minutes after it is
    refused. Without it only the lower bound (1990) is checked.
    """
    catalogue = catalogue or load_catalogue()
    if not _is_mapping(obj):
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
    return check_occurred_at(_event_checker(etype)(obj, kind), now)

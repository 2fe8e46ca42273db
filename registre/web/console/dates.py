"""Instants as a person in France reads them: in UTC (what the ledger records) and in
Europe/Paris time (what the person wrote in their letter), and back from a form field.

Pure functions: no clock, no I/O. A form's ``datetime-local`` value has no offset: it is read
as Paris time (daylight saving included; an hour that happens twice in October is taken the
first time). A full RFC 3339 instant with an offset is taken as it is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")


class BadInstant(ValueError):
    """Not an instant a form field can give (the message names the field, not the value)."""


def instant(iso: str | datetime) -> datetime:
    """An RFC 3339 instant (as the ledger's documents write them) as an aware UTC datetime."""
    at = iso if isinstance(iso, datetime) else datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise BadInstant("instant without an offset")
    return at.astimezone(UTC)


def utc(iso: str | datetime) -> str:
    """``2026-03-03 14:00:05 UTC``."""
    return instant(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def paris(iso: str | datetime, with_date: bool = True) -> str:
    """``2026-03-03 15:00:05 Paris`` (or just the time)."""
    local = instant(iso).astimezone(PARIS)
    return local.strftime("%Y-%m-%d %H:%M:%S Paris" if with_date else "%H:%M:%S Paris")


def both(iso: str | datetime | None) -> str:
    """``2026-03-03 14:00:05 UTC (15:00:05 Paris)``; the Paris date too when it differs."""
    if iso is None or iso == "":
        return "-"
    at = instant(iso)
    same_day = at.date() == at.astimezone(PARIS).date()
    return f"{utc(at)} ({paris(at, with_date=not same_day)})"


def pair(iso: str | datetime | None) -> tuple[str, str]:
    """(``2026-03-03 14:00:05 UTC``, ``15:00:05 Paris``) for two lines of a table cell."""
    if iso is None or iso == "":
        return "-", ""
    at = instant(iso)
    return utc(at), paris(at, with_date=at.date() != at.astimezone(PARIS).date())


def day(iso: str | datetime | None) -> str:
    """``2026-03-03`` (UTC), for short mentions such as "destroyed on 2026-03-03"."""
    return "-" if not iso else instant(iso).strftime("%Y-%m-%d")


def local_value(iso: str | datetime) -> str:
    """The Paris time of an instant as a ``datetime-local`` field's value."""
    return instant(iso).astimezone(PARIS).strftime("%Y-%m-%dT%H:%M:%S")


def from_field(text: str, field: str) -> datetime:
    """A form field's instant: Paris time without an offset, or RFC 3339 with one (UTC out)."""
    text = (text or "").strip()
    try:
        if _LOCAL.match(text):
            naive = datetime.fromisoformat(text.replace(" ", "T"))
            return naive.replace(tzinfo=PARIS).astimezone(UTC)
        return instant(text)
    except ValueError:
        raise BadInstant(f"{field}: expected a date and time such as 2026-03-03T15:00 (Paris"
                         " time) or an RFC 3339 instant with an offset") from None

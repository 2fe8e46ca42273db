"""Instants as a person in France reads them: in UTC (what the ledger records) and in
Europe/Paris time (what the person wrote in their letter), and back from a form field.

Pure functions: no clock, no I/O. A form's instant is written ``2026-03-03 15:00`` (seconds
optional; a ``T`` instead of the space too): with no offset it is read as Paris time (daylight
saving included; an hour that happens twice in October is taken the first time). A full RFC
3339 instant with an offset is taken as it is. The console uses plain text fields for them,
not the browser's date picker, whose format follows the browser's locale (03/12/2026 or
12/03/2026): a compliance record must not be ambiguous.
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


def days_late(deadline: str | datetime, now: str | datetime) -> str:
    """How long ago a deadline passed, in whole days: ``9 days``, ``less than a day``."""
    days = (instant(now) - instant(deadline)).days
    return "less than a day" if days < 1 else f"{days} day{'s' if days != 1 else ''}"


def day(iso: str | datetime | None) -> str:
    """``2026-03-03`` (UTC), for short mentions such as "destroyed on 2026-03-03"."""
    return "-" if not iso else instant(iso).strftime("%Y-%m-%d")


def local_value(iso: str | datetime) -> str:
    """The Paris time of an instant as a form field shows it: ``2026-03-03 15:00:00``."""
    return instant(iso).astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S")


def from_field(text: str, field: str) -> datetime:
    """A form field's instant: Paris time without an offset, or RFC 3339 with one (UTC out)."""
    text = (text or "").strip()
    try:
        if _LOCAL.match(text):
            naive = datetime.fromisoformat(text.replace(" ", "T"))
            return naive.replace(tzinfo=PARIS).astimezone(UTC)
        return instant(text)
    except ValueError:
        raise BadInstant(f"{field}: expected a date and time such as 2026-03-03 15:00 (Paris"
                         " time) or an RFC 3339 instant with an offset") from None

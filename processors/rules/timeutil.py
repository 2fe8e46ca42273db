"""Calendar arithmetic on timezone-aware UTC instants (pure; no clock is ever read here).

Retention durations are whole calendar months. ``add_months`` keeps the time of day and clamps
the day to the last day of the target month (31 January + 1 month = 28/29 February), so a
duration is always added in one step from its anchor, never month by month.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def ensure_utc(at: datetime, what: str = "instant") -> datetime:
    """The same instant in UTC; a naive datetime is refused (it names no instant)."""
    if not isinstance(at, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(at).__name__}")
    if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {at.isoformat()})")
    return at.astimezone(UTC)


def add_months(at: datetime, months: int) -> datetime:
    """``at`` moved by ``months`` calendar months (negative moves back), in UTC.

    The day is clamped to the length of the target month; the time of day is kept.
    """
    if isinstance(months, bool) or not isinstance(months, int):
        raise TypeError(f"months must be an int, not {type(months).__name__}")
    at = ensure_utc(at)
    index = at.year * 12 + (at.month - 1) + months
    year, month0 = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError(f"{at.isoformat()} + {months} months is out of range")
    day = min(at.day, calendar.monthrange(year, month0 + 1)[1])
    return at.replace(year=year, month=month0 + 1, day=day)


def parse_period(period: str) -> tuple[int, int]:
    """``"YYYY-MM"`` as (year, month); anything else is a ValueError."""
    match = _PERIOD.match(period) if isinstance(period, str) else None
    if not match:
        raise ValueError(f"key period must be 'YYYY-MM', got {period!r}")
    return int(match.group(1)), int(match.group(2))


def month_start(period: str) -> datetime:
    """The first instant of the UTC month ``"YYYY-MM"``."""
    year, month = parse_period(period)
    return datetime(year, month, 1, tzinfo=UTC)


def month_end(period: str) -> datetime:
    """The end of the UTC month ``"YYYY-MM"``: the first instant of the next month (exclusive)."""
    return add_months(month_start(period), 1)


def period_of(at: datetime) -> str:
    """The UTC month ``"YYYY-MM"`` of an instant (the key period of connection/location data)."""
    at = ensure_utc(at)
    return f"{at.year:04d}-{at.month:02d}"


def format_utc(at: datetime) -> str:
    """RFC 3339 in UTC, ``Z`` suffix, microseconds only when there are some (for reasons)."""
    at = ensure_utc(at)
    spec = "microseconds" if at.microsecond else "seconds"
    return at.isoformat(timespec=spec).replace("+00:00", "Z")

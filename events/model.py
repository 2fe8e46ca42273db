"""Event values: frozen, timezone-aware, named in the past tense (the type names of the schemas)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, datetime):
        return format_instant(value)
    return value


def format_instant(at: datetime) -> str:
    """RFC 3339 in UTC with microseconds only when there are some. Formatted by hand: an
    aware datetime's ``isoformat`` costs twice as much, and the views repeat instants."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    text = "%04d-%02d-%02dT%02d:%02d:%02d" % (  # noqa: UP031 - faster than an f-string
        at.year, at.month, at.day, at.hour, at.minute, at.second)
    return f"{text}.{at.microsecond:06d}Z" if at.microsecond else text + "Z"


@dataclass(frozen=True)
class Event:
    """One fact about one data subject. ``data`` holds plain values (before encryption)."""

    event_id: str
    type: str
    subject_id: str
    occurred_at: datetime
    source: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))
        object.__setattr__(self, "data", _freeze(self.data))

    @classmethod
    def from_validated(
        cls,
        event_id: str,
        type: str,
        subject_id: str,
        occurred_at: datetime,
        source: str,
        data: Mapping[str, Any],
    ) -> Event:
        """An event from values `events.validation` has just built, taken without a copy.

        ``data`` must already be frozen (read-only mappings and tuples that nothing else holds)
        and ``occurred_at`` timezone-aware: what ``__post_init__`` would otherwise ensure.
        """
        event = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(event, "event_id", event_id)
        setattr_(event, "type", type)
        setattr_(event, "subject_id", subject_id)
        setattr_(event, "occurred_at", occurred_at.astimezone(UTC))
        setattr_(event, "source", source)
        setattr_(event, "data", data)
        return event

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form of domain.md."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "subject_id": self.subject_id,
            "occurred_at": format_instant(self.occurred_at),
            "source": self.source,
            "data": _thaw(self.data),
        }


def new_event(
    type: str,
    subject_id: str,
    data: Mapping[str, Any],
    occurred_at: datetime,
    source: str,
    event_id: str | None = None,
) -> Event:
    """An event with a fresh UUID (or the given one)."""
    return Event(event_id or str(uuid.uuid4()), type, subject_id, occurred_at, source, data)

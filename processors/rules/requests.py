"""Data-subject requests (GDPR art. 12(3)) as pure functions: no clock, no broker, no database.

A request is a JSON-able entry (instants as RFC 3339 text in UTC). The customer-view fold keeps
a subject's requests under ``view["requests"][request_id]`` (`processors.rules.fold`), and the
``projections.requests`` table copies those entries for lists across subjects. The rules, with
the durations of the loaded policy:

* a request is due ``request_response_months`` after its receipt (the ``occurred_at`` of
  RequestReceived), calendar months added in one step in UTC (31 January + 1 month = the last
  day of February);
* it may be extended once, by 1 up to ``request_extension_max_months`` more months (the new
  deadline is again one step from the receipt), and only by an extension recorded before the
  first deadline;
* it is completed once. An extension or completion of a request that was never received, is
  already completed, or that is dated before the request's last event is refused
  (`RequestRefused`: the processors dead-letter the event with that reason).

The status at an instant (the caller's clock, never an event's time): ``open`` before the
deadline, ``overdue`` from the deadline on, ``done`` once completed (``late`` when completed
at or after the deadline).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from events.model import format_instant
from processors.rules.policy import Policy
from processors.rules.timeutil import add_months, ensure_utc

REQUEST_EVENTS = ("RequestReceived", "RequestExtended", "RequestCompleted")
STATUSES = ("open", "overdue", "done")
Entry = dict[str, Any]


class RequestRefused(ValueError):
    """A request event the rules refuse; the message says which field and why."""


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def deadline(received_at: datetime, policy: Policy, extended_months: int = 0) -> datetime:
    """When a request received at ``received_at`` is due (after an extension, if any)."""
    return add_months(received_at, policy.request_response_months + extended_months)


def received(request_id: str, kind: str, channel: str, identity_verified: bool,
             at: datetime, event_id: str, policy: Policy) -> Entry:
    """A new request's entry, due ``request_response_months`` after ``at``."""
    return {"request_id": request_id, "kind": kind, "channel": channel,
            "identity_verified": identity_verified, "received_at": format_instant(at),
            "received_event_id": event_id, "deadline": format_instant(deadline(at, policy)),
            "extension": None, "completed_at": None, "outcome": None, "reason": None,
            "completed_event_id": None}


def _pending(entry: Entry | None, request_id: str, at: datetime, what: str) -> Entry:
    """The entry of a request that can still be extended or completed at ``at``."""
    if entry is None:
        raise RequestRefused(f"data.request_id: no request {request_id} was received for this "
                             f"subject: nothing to {what}")
    if entry["completed_at"]:
        raise RequestRefused(f"data.request_id: request {request_id} was already completed"
                             f" ({entry['outcome']}, {entry['completed_at']})")
    last = entry["extension"]["at"] if entry["extension"] else entry["received_at"]
    if ensure_utc(at) < _at(last):
        raise RequestRefused(f"occurred_at: {format_instant(at)} is before the request's last"
                             f" event ({last}): cannot {what} it then")
    return entry


def extend(entry: Entry | None, request_id: str, months: int, reason: str, at: datetime,
           event_id: str, policy: Policy) -> Entry:
    """The entry extended by ``months`` at ``at``; refused unless the rules allow it."""
    entry = _pending(entry, request_id, at, "extend")
    if entry["extension"]:
        ext = entry["extension"]
        raise RequestRefused(f"data.request_id: request {request_id} was already extended once"
                             f" ({ext['at']}, by {ext['months']} month(s)); a request is"
                             " extended at most once")
    most = policy.request_extension_max_months
    if most == 0:
        raise RequestRefused("data.months: the policy allows no extension"
                             " (request_extension_max_months is 0)")
    if not 1 <= months <= most:
        raise RequestRefused(f"data.months: an extension is 1 to {most} month(s)"
                             f" (policy request_extension_max_months), got {months}")
    received_at = _at(entry["received_at"])
    first = deadline(received_at, policy)
    if ensure_utc(at) >= first:
        raise RequestRefused(f"occurred_at: too late to extend request {request_id}: an"
                             f" extension must be recorded before its first deadline"
                             f" ({format_instant(first)})")
    return {**entry, "deadline": format_instant(deadline(received_at, policy, months)),
            "extension": {"months": months, "reason": reason, "at": format_instant(at),
                          "event_id": event_id}}


def complete(entry: Entry | None, request_id: str, outcome: str, reason: str | None,
             at: datetime, event_id: str) -> Entry:
    """The entry completed at ``at`` with ``outcome``; refused unless it is still pending."""
    entry = _pending(entry, request_id, at, "complete")
    return {**entry, "completed_at": format_instant(at), "outcome": outcome, "reason": reason,
            "completed_event_id": event_id}


def apply_request(requests: Mapping[str, Entry], kind: str, data: Mapping[str, Any],
                  at: datetime, event_id: str, policy: Policy) -> dict[str, Entry]:
    """A subject's requests after one request event (a new mapping; the given one is kept)."""
    request_id = data["request_id"]
    entry = requests.get(request_id)
    if kind == "RequestReceived":
        if entry is not None:
            raise RequestRefused(f"data.request_id: request {request_id} was already received"
                                 f" (event {entry['received_event_id']})")
        entry = received(request_id, data["kind"], data["channel"], data["identity_verified"],
                         at, event_id, policy)
    elif kind == "RequestExtended":
        entry = extend(entry, request_id, data["months"], data["reason"], at, event_id, policy)
    elif kind == "RequestCompleted":
        entry = complete(entry, request_id, data["outcome"], data.get("reason"), at, event_id)
    else:
        raise ValueError(f"{kind} is not a request event")
    return {**requests, request_id: entry}


def status_at(entry: Entry, now: datetime) -> tuple[str, bool]:
    """(status, late) of a request at ``now``: open, overdue or done; late once past due."""
    due = _at(entry["deadline"])
    if entry["completed_at"]:
        return "done", _at(entry["completed_at"]) >= due
    if ensure_utc(now) >= due:
        return "overdue", True
    return "open", False


def expected_match(entry: Entry) -> str | None:
    """What a completed request must be matched with (domain.md): ``ErasureRequested`` for a
    fulfilled erasure, ``export`` for a fulfilled access or portability request, else None."""
    if entry["outcome"] != "fulfilled":
        return None
    if entry["kind"] == "erasure":
        return "ErasureRequested"
    if entry["kind"] in ("access", "portability"):
        return "export"
    return None

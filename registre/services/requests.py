"""Data-subject requests (GDPR art. 12(3), domain.md): open, extend, complete, list, show.

Each function takes what it uses (a connection, a publisher, the loaded policy, the caller's
instant ``now``) and returns one JSON document: the command line prints it (`registre requests
...`) and a web route can return it as it is. Opening, extending and completing publish
``RequestReceived``, ``RequestExtended`` and ``RequestCompleted`` (source
``registre-compliance``); the processors fold them into the customer view and the
``projections.requests`` table with the rules of `processors.rules.requests`.

Before publishing an extension or a completion, the request is looked up in the projection and
the same rules are run on it at ``now``, so a mistake (unknown request, second or late
extension, already completed) is refused at once with its reason instead of ending as a dead
letter; the processors enforce the rules anyway. A request opened a moment ago is known once
the processors have applied it (`registre wait`).

A request's document: ``request_id``, ``subject_id``, ``kind``, ``channel``,
``identity_verified``, ``received_at``, ``deadline``, ``status`` (open, overdue, done at
``now``), ``late``, ``extension`` ({months, reason, at, event_id} or null), ``completed_at``,
``outcome``, ``reason``, the event ids, and for a fulfilled erasure or access/portability
request what it ``expects`` (``ErasureRequested`` or ``export``), the ``matching`` evidence
found at or before the completion (null when none) and a ``problem`` when none was found.

Errors, each one line: `registre.services.audit.BadQuestion` (a malformed request id, subject
id, status, instant or number), `events.validation.InvalidEvent` (a value the event schema
refuses: kind, channel, outcome, a blank reason), `UnknownRequest` (no such request), and
`processors.rules.requests.RequestRefused` (the rules refuse it: a second or late extension,
a request already completed). A web route answers them 422, 422, 404 and 409.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg

from events.model import format_instant
from events.publisher import Publisher
from processors.rules.policy import Policy
from processors.rules.requests import (
    STATUSES,
    Entry,
    complete,
    expected_match,
    extend,
    received,
    status_at,
)
from processors.rules.timeutil import ensure_utc
from projections import requests as table
from registre.services.audit import BadQuestion, check_subject

SOURCE = "registre-compliance"
Doc = dict[str, Any]


class UnknownRequest(LookupError):
    """No request with that id in the projection (or more than one subject holds that id)."""


def check_request_id(text: str) -> str:
    """A request id in its canonical UUID form; anything else is a `BadQuestion`."""
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        raise BadQuestion(f"request id {str(text)[:60]!r}: not a UUID") from None


def check_status(status: str | None) -> str | None:
    if status is not None and status not in STATUSES:
        raise BadQuestion(f"status {status!r}: expected one of {', '.join(STATUSES)}")
    return status


def _event(kind: str, subject_id: str, at: datetime, data: Doc) -> Doc:
    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject_id,
            "occurred_at": format_instant(at), "source": SOURCE, "data": data}


def describe(subject_id: str, entry: Entry, now: datetime) -> Doc:
    """A request's document at ``now`` (without the matching evidence)."""
    status, late = status_at(entry, now)
    ext = entry["extension"]
    extension = ext and {k: ext[k] for k in ("months", "reason", "at", "event_id")}
    return {"request_id": entry["request_id"], "subject_id": subject_id,
            "kind": entry["kind"], "channel": entry["channel"],
            "identity_verified": entry["identity_verified"],
            "received_at": entry["received_at"], "deadline": entry["deadline"],
            "status": status, "late": late, "extension": extension,
            "completed_at": entry["completed_at"], "outcome": entry["outcome"],
            "reason": entry["reason"], "received_event_id": entry["received_event_id"],
            "completed_event_id": entry["completed_event_id"]}


def _matching(conn: psycopg.Connection, subject_id: str, entry: Entry, expects: str
              ) -> Doc | None:
    done = datetime.fromisoformat(entry["completed_at"])
    if expects == "ErasureRequested":
        erasure = table.erasure_by(conn, subject_id, done)
        if erasure is None:
            return None
        return {"type": expects, "event_id": erasure[0], "at": format_instant(erasure[1])}
    export = table.export_between(conn, subject_id,
                                  datetime.fromisoformat(entry["received_at"]), done)
    if export is None:
        return None
    access_id, at, reader, case_ref = export
    return {"type": expects, "access_id": access_id, "at": format_instant(at),
            "reader": reader, "case_ref": case_ref}


def _problem(subject_id: str, entry: Entry, expects: str) -> str:
    if expects == "ErasureRequested":
        return (f"completed as fulfilled, but {subject_id} has no ErasureRequested at or before"
                f" {entry['completed_at']}")
    return (f"completed as fulfilled, but {subject_id} has no export in the access log between"
            f" {entry['received_at']} and {entry['completed_at']}")


def document(conn: psycopg.Connection, subject_id: str, entry: Entry, now: datetime) -> Doc:
    """A request's document at ``now``, with its matching erasure or export when it needs one.

    A fulfilled erasure request is matched with the subject's first ``ErasureRequested`` at or
    before the completion; a fulfilled access or portability request with the subject's last
    export in the access log between the receipt and the completion (an export made before
    the request arrived does not answer it).
    """
    doc = describe(subject_id, entry, now)
    expects = expected_match(entry)
    found = _matching(conn, subject_id, entry, expects) if expects else None
    problem = _problem(subject_id, entry, expects) if expects and found is None else None
    return {**doc, "expects": expects, "matching": found, "problem": problem}


def lookup(conn: psycopg.Connection, request_id: str) -> tuple[str, Entry]:
    """(subject id, entry) of a request known to the projection."""
    request_id = check_request_id(request_id)
    found = table.find(conn, request_id)
    if not found:
        raise UnknownRequest(f"request {request_id}: no such request in the ledger (a request"
                             " opened a moment ago is known once the processors applied it:"
                             " `registre wait`)")
    if len(found) > 1:
        raise UnknownRequest(f"request {request_id}: held by {len(found)} subjects"
                             f" ({', '.join(s for s, _ in found)}); publish the event with"
                             " the subject id instead")
    return found[0]


# --- actions --------------------------------------------------------------------------------


def open_request(publisher: Publisher, policy: Policy, subject_id: str, kind: str,
                 channel: str, identity_verified: bool, now: datetime,
                 received_at: datetime | None = None, request_id: str | None = None) -> Doc:
    """Publish a RequestReceived (received ``received_at``, default ``now``); its document."""
    check_subject(subject_id)
    now = ensure_utc(now, "now")
    at = ensure_utc(received_at, "received_at") if received_at is not None else now
    if at > now:
        raise BadQuestion(f"received at {format_instant(at)}: later than now"
                          f" ({format_instant(now)})")
    request_id = check_request_id(request_id) if request_id else str(uuid.uuid4())
    published = publisher.publish(_event("RequestReceived", subject_id, at, {
        "request_id": request_id, "kind": kind, "channel": channel,
        "identity_verified": identity_verified}))
    entry = received(request_id, kind, channel, identity_verified, published.occurred_at,
                     published.event_id, policy)
    return {"published": published.type, "event_id": published.event_id,
            **describe(subject_id, entry, now)}


def extend_request(conn: psycopg.Connection, publisher: Publisher, policy: Policy,
                   request_id: str, months: int, reason: str, now: datetime) -> Doc:
    """Publish a RequestExtended for a known request, if the rules allow it at ``now``."""
    now = ensure_utc(now, "now")
    if isinstance(months, bool) or not isinstance(months, int):
        raise BadQuestion(f"months {months!r}: expected a whole number")
    subject_id, entry = lookup(conn, request_id)
    extend(entry, entry["request_id"], months, reason, now, "-", policy)  # refused: raises
    published = publisher.publish(_event("RequestExtended", subject_id, now, {
        "request_id": entry["request_id"], "months": months, "reason": reason}))
    after = extend(entry, entry["request_id"], months, reason, published.occurred_at,
                   published.event_id, policy)
    return {"published": published.type, "event_id": published.event_id,
            **document(conn, subject_id, after, now)}


def complete_request(conn: psycopg.Connection, publisher: Publisher, request_id: str,
                     outcome: str, reason: str | None, now: datetime) -> Doc:
    """Publish a RequestCompleted for a known, pending request; its document (with what it is
    matched with, so a fulfilled erasure without an erasure shows its problem at once)."""
    now = ensure_utc(now, "now")
    subject_id, entry = lookup(conn, request_id)
    complete(entry, entry["request_id"], outcome, reason, now, "-")  # refused: raises
    data: Doc = {"request_id": entry["request_id"], "outcome": outcome}
    if reason is not None:
        data["reason"] = reason
    published = publisher.publish(_event("RequestCompleted", subject_id, now, data))
    after = complete(entry, entry["request_id"], outcome, reason, published.occurred_at,
                     published.event_id)
    return {"published": published.type, "event_id": published.event_id,
            **document(conn, subject_id, after, now)}


# --- questions ------------------------------------------------------------------------------


def list_requests(conn: psycopg.Connection, now: datetime, status: str | None = None,
                  subject_id: str | None = None) -> Doc:
    """Every request with that status at ``now`` (open, overdue, done; all when None).

    Open and overdue requests come soonest deadline first, done ones latest completion first,
    all of them latest receipt first; ``counts`` gives the three totals.
    """
    now = ensure_utc(now, "now")
    check_status(status)
    if subject_id is not None:
        check_subject(subject_id)
    found = table.listing(conn, now, status, subject_id)
    return {"now": format_instant(now), "status": status or "all", "subject_id": subject_id,
            "counts": table.counts(conn, now, subject_id),
            "requests": [document(conn, s, e, now) for s, e in found]}


def show_request(conn: psycopg.Connection, request_id: str, now: datetime) -> Doc:
    """One request's document at ``now``."""
    subject_id, entry = lookup(conn, request_id)
    return document(conn, subject_id, entry, ensure_utc(now, "now"))

"""The customer view as a pure fold: (view, event) -> view. No broker, no database.

A view is a plain JSON-able dict (stored as JSONB). Personal fields are kept exactly as they
came in the log: sealed bytes (base64) with the context needed to decrypt them on read
(event id, type, instant, field path). Destroying a key therefore makes every copy unreadable
at once, with no table to scrub.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from events.catalogue import Catalogue, load_catalogue
from events.codec import Record
from events.crypto import REDACTED, sealed_version
from events.model import format_instant
from processors.rules.timeutil import add_months

CONSENT_MONTHS = 13
PERSONAL_GROUPS = {"identity": ("gender", "last_name", "first_name"),
                   "contact": ("email", "phone", "postal_address")}


class Rejected(ValueError):
    """An event the view cannot apply (it is kept in the log and dead-lettered with this)."""


def empty_view(subject_id: str) -> dict[str, Any]:
    return {
        "subject_id": subject_id,
        "status": "active",
        "has_account": False,
        "created_at": None,
        "deleted_at": None,
        "erased_at": None,
        "personal": {},
        "last_connection": None,
        "consents": {},
        "authorisations": {},
        "holds": {},
        "documents": [],
        "counts": {"events": 0, "connections": 0, "disclosures": 0,
                   "unauthorised_disclosures": 0, "documents": 0},
        "last_event_at": None,
    }


def _ref(record: Record, path: str, category: str, sealed: bytes) -> dict[str, Any]:
    return {"e": record.event_id, "t": record.type, "at": format_instant(record.occurred_at),
            "p": path, "c": category, "v": base64.b64encode(sealed).decode()}


def _sealed_leaves(record: Record, catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """Personal leaves of the record, keyed by path inside data; refuse unsealed values."""
    etype = catalogue.types[record.type]
    out = {}
    for field, value in record.sealed_fields(etype):
        if value != REDACTED and sealed_version(value) is None:
            raise Rejected(f"{field.dotted}: personal field is not sealed")
        out[".".join(field.path[1:])] = _ref(record, field.dotted, field.category, value)
    return out


def _authorised(view: dict[str, Any], d: dict[str, Any]) -> bool:
    """As `processors.rules.audit.disclosures`: a legal obligation or a processor contract
    authorises by itself; otherwise that recipient's authorisation must cover every category."""
    if d["basis"] == "legal_obligation" or (d["recipient_kind"], d["basis"]) == (
            "processor", "processor_contract"):
        return True
    auth = view["authorisations"].get(d["recipient"])
    return auth is not None and set(d["categories"]) <= set(auth["categories"])


def consent_expiry(at: datetime) -> datetime:
    return add_months(at, CONSENT_MONTHS)


def apply(view: dict[str, Any] | None, record: Record,
          catalogue: Catalogue | None = None) -> dict[str, Any]:
    """Return the view after ``record``. Raises Rejected for an event it cannot apply."""
    catalogue = catalogue or load_catalogue()
    # Copy on write: a shallow copy, and a copy of each branch before it changes (a deep copy
    # of every view for every event was the processors' largest cost).
    v = dict(view) if view else empty_view(record.subject_id)
    v["counts"] = dict(v["counts"])
    at = format_instant(record.occurred_at)
    d = record.data
    kind = record.type
    if kind == "AccountCreated":
        if v["has_account"] and v["status"] == "active":
            raise Rejected("subject_id: the subject already has a live account")
        v.update(status="active", has_account=True, created_at=at, deleted_at=None)
        v["personal"] = _sealed_leaves(record, catalogue)
    elif kind == "AccountUpdated":
        if not (v["has_account"] and v["status"] == "active"):
            raise Rejected("subject_id: no live account to update")
        leaves = _sealed_leaves(record, catalogue)
        if d.get("postal_address") is not None:
            v["personal"] = {k: r for k, r in v["personal"].items()
                             if not k.startswith("postal_address.")}
        v["personal"] = {**v["personal"], **leaves}
    elif kind == "ConnectionRecorded":
        v["last_connection"] = {"at": at, "event_id": record.event_id,
                                "fields": _sealed_leaves(record, catalogue)}
        v["counts"]["connections"] += 1
    elif kind in ("ConsentGiven", "ConsentRefused", "ConsentWithdrawn", "ConsentExpired"):
        status = {"ConsentGiven": "granted", "ConsentRefused": "refused",
                  "ConsentWithdrawn": "withdrawn", "ConsentExpired": "expired"}[kind]
        expires = (format_instant(consent_expiry(record.occurred_at))
                   if status in ("granted", "refused") else None)
        v["consents"] = dict(v["consents"])
        for purpose in d["purposes"]:
            if kind == "ConsentExpired" and (
                v["consents"].get(purpose, {}).get("event_id") != d["choice_event_id"]
            ):
                continue  # a newer choice superseded the one that expired
            v["consents"][purpose] = {
                "status": status, "at": at, "event_id": record.event_id,
                "notice_version": d.get("notice_version"),
                "mechanism": d.get("mechanism"), "expires_at": expires,
            }
            if kind == "ConsentExpired":
                v["consents"][purpose]["choice_event_id"] = d["choice_event_id"]
    elif kind == "SharingAuthorised":
        v["authorisations"] = dict(v["authorisations"])
        v["authorisations"][d["recipient"]] = {
            "categories": sorted(d["categories"]), "purpose": d["purpose"],
            "since": at, "event_id": record.event_id}
    elif kind == "SharingRevoked":
        v["authorisations"] = {r: a for r, a in v["authorisations"].items()
                               if r != d["recipient"]}
    elif kind == "DataShared":
        v["counts"]["disclosures"] += 1
        if not _authorised(v, d):
            v["counts"]["unauthorised_disclosures"] += 1
    elif kind == "DocumentIssued":
        document = {"kind": d["kind"], "document_ref": d["document_ref"], "at": at,
                    "event_id": record.event_id}
        v["documents"] = [*v["documents"], document]
        v["counts"]["documents"] += 1
    elif kind == "AccountDeleted":
        if v["status"] == "active":
            v["status"] = "deleted"
        v["deleted_at"] = v["deleted_at"] or at
    elif kind == "ErasureRequested":
        v["status"] = "erased"
        v["erased_at"] = v["erased_at"] or at
    elif kind == "LegalHoldPlaced":
        v["holds"] = dict(v["holds"])
        v["holds"][d["case_ref"]] = {"reason": d["reason"], "categories": d.get("categories"),
                                     "since": at, "event_id": record.event_id}
    elif kind == "LegalHoldReleased":
        v["holds"] = {c: h for c, h in v["holds"].items() if c != d["case_ref"]}
    v["counts"]["events"] += 1
    last = v["last_event_at"]  # compare instants, not strings ("...00Z" > "...00.5Z")
    v["last_event_at"] = at if not last or datetime.fromisoformat(last) < record.occurred_at \
        else last
    return v

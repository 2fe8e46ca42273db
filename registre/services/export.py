"""The access and portability export (GDPR art. 15 and 20): everything about one subject in
one JSON document, from its own records in the log. A restricted read: it is recorded in the
access log and committed before anything is decrypted.

The document is put together in named steps: the account and its personal data, connections,
consents, sharing, documents and holds, retention and erasure, the record of processing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from events.catalogue import Catalogue, load_catalogue
from events.codec import KeyLookup, Record, lookup_from, reveal
from events.keys import KeyRef, key_period
from events.keystore import KeyStore
from events.model import format_instant
from processors.rules import audit as folds
from processors.rules.policy import Policy
from processors.rules.timeutil import ensure_utc
from projections.access_log import record_access
from registre.services.audit import (
    consent_purposes,
    processing_record,
    records_of,
    sharing_kept_until,
)
from registre.services.erasure import NoSuchSubject, erasure_report
from registre.services.views import prune, readable_only, render

EXPORT_FORMAT = "registre-export/1"
EXPORT_CASE = "art-15-20-request"
Doc = dict[str, Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_instant(value)
    return value


def key_lookup(keystore: KeyStore, records: Sequence[Record],
               catalogue: Catalogue | None = None) -> KeyLookup:
    """One key-store query for every key the records' personal fields need."""
    catalogue = catalogue or load_catalogue()
    refs = {KeyRef(r.subject_id, f.category, key_period(f.category, r.occurred_at))
            for r in records for f, _ in r.sealed_fields(catalogue.types[r.type])}
    return lookup_from(keystore.keys_for_reading(refs))


def _authorisations(records: list[Record]) -> list[Doc]:
    order = {r.event_id: i for i, r in enumerate(records)}
    sharing = sorted((r for r in records if r.type in ("SharingAuthorised", "SharingRevoked")),
                     key=lambda r: (r.occurred_at, order[r.event_id]))
    out: list[Doc] = []
    active: dict[str, Doc] = {}
    for r in sharing:
        at = format_instant(r.occurred_at)
        recipient = r.data["recipient"]
        if r.type == "SharingAuthorised":
            if recipient in active:
                active[recipient]["ended_at"] = at
                active[recipient]["ended_by"] = "replaced"
            entry = {"recipient": recipient, "categories": sorted(r.data["categories"]),
                     "purpose": r.data["purpose"], "granted_at": at, "event_id": r.event_id,
                     "ended_at": None, "ended_by": None}
            active[recipient] = entry
            out.append(entry)
        elif recipient in active:
            entry = active.pop(recipient)
            entry["ended_at"], entry["ended_by"] = at, f"revoked ({r.event_id})"
    for entry in out:
        entry["active"] = entry["ended_at"] is None
    return out


def _holds(records: list[Record]) -> list[Doc]:
    holds: dict[str, Doc] = {}
    out = []
    for r in sorted(records, key=lambda r: r.occurred_at):
        ref = r.data.get("case_ref")
        if r.type == "LegalHoldPlaced":
            holds[ref] = {"case_ref": ref, "reason": r.data["reason"],
                          "categories": r.data.get("categories") or "all",
                          "placed_at": format_instant(r.occurred_at), "released_at": None,
                          "event_id": r.event_id}
            out.append(holds[ref])
        elif r.type == "LegalHoldReleased" and ref in holds:
            holds.pop(ref)["released_at"] = format_instant(r.occurred_at)
    return out


def _applies(entry: Doc, view: Doc | None, consents: dict[str, Doc], holds: list[Doc],
             documents: list[Doc], connections_held: int) -> tuple[bool, str]:
    live = bool(view and view["has_account"] and view["status"] == "active")
    account = "the account is active" if live else "no active account"
    active_holds = [h["case_ref"] for h in holds if h["released_at"] is None]
    rule = entry["applies_while"]
    if rule == "consent":
        status = consents[entry["purpose"]]["status"]
        return status == "granted", f"consent {status}"
    if rule == "account":
        return live, account
    if rule == "connection_data":
        return connections_held > 0, f"{connections_held} connection record(s) still readable"
    if rule == "account_or_hold":
        if active_holds:
            return True, "legal hold " + ", ".join(active_holds)
        return live, account
    if rule == "document_retention":
        return bool(documents), f"{len(documents)} document(s) issued"
    return False, f"unknown rule {rule!r}"


def _account(found: list[Record], plain: dict[str, Doc], view_doc: Doc | None,
             view: Doc | None) -> Doc:
    history = [
        {"at": format_instant(r.occurred_at), "type": r.type, "event_id": r.event_id,
         "fields": prune({k: v for k, v in plain[r.event_id].items()
                          if k not in ("over_15", "notice_version")})}
        for r in found if r.type in ("AccountCreated", "AccountUpdated")]
    return {
        "account": {k: view_doc.get(k) if view_doc else None
                    for k in ("status", "has_account", "created_at", "deleted_at", "erased_at")},
        "personal_data": {"identity": view["identity"] if view else None,
                          "contact": view["contact"] if view else None},
        "account_history": history,
        "connections": [{"at": format_instant(r.occurred_at), "event_id": r.event_id,
                         **(prune(plain[r.event_id]) or {})}
                        for r in found if r.type == "ConnectionRecorded"],
    }


def _consents(found: list[Record], now: datetime, policy: Policy) -> Doc:
    history = [
        {"at": format_instant(r.occurred_at), "type": r.type, "event_id": r.event_id,
         "status": folds.CHOICES.get(r.type, "expired"), "purposes": list(r.data["purposes"]),
         "notice_version": r.data.get("notice_version"), "mechanism": r.data.get("mechanism"),
         **({"choice_event_id": r.data["choice_event_id"]} if r.type == "ConsentExpired"
            else {})}
        for r in found if r.type in (*folds.CHOICES, "ConsentExpired")]
    asked = {p for r in found if r.type in folds.CHOICES for p in r.data["purposes"]}
    months = policy.consent_validity_months
    return {"consents": {p: folds.consent_at(found, p, now, months)
                         for p in sorted(set(consent_purposes()) | asked)},
            "consent_history": history}


def _sharing(found: list[Record], withheld_until: datetime | None) -> Doc:
    """Authorisations, disclosures and recipients; none past the sharing records' retention."""
    if withheld_until is not None:
        return {"authorisations": [], "disclosures": [], "recipients": [],
                "sharing_records": {"kept_until": format_instant(withheld_until),
                                    "withheld": True}}
    shared = folds.disclosures(found)
    recipients: dict[str, Doc] = {}
    for d in shared:
        rec = recipients.setdefault(d["recipient"], {
            "recipient": d["recipient"], "recipient_kind": d["recipient_kind"],
            "categories": set(), "countries": set(), "disclosures": 0, "unauthorised": 0})
        rec["categories"] |= set(d["categories"])
        rec["countries"].add(d["country"])
        rec["disclosures"] += 1
        rec["unauthorised"] += 0 if d["authorised"] else 1
    return {"authorisations": _authorisations(found), "disclosures": shared,
            "recipients": [{**r, "categories": sorted(r["categories"]),
                            "countries": sorted(r["countries"])}
                           for _, r in sorted(recipients.items())],
            "sharing_records": {"kept_until": None, "withheld": False}}


def _records_section(found: list[Record]) -> Doc:
    return {
        "documents": [{"kind": r.data["kind"], "document_ref": r.data["document_ref"],
                       "at": format_instant(r.occurred_at), "event_id": r.event_id}
                      for r in found if r.type == "DocumentIssued"],
        "legal_holds": _holds(found),
        "erasure_certificates": [{"at": format_instant(r.occurred_at), "event_id": r.event_id,
                                  **_jsonable(r.data)}
                                 for r in found if r.type == "ErasureCompleted"],
        "keys_destroyed": [{"at": format_instant(r.occurred_at), "event_id": r.event_id,
                            **_jsonable(r.data)}
                           for r in found if r.type == "KeysDestroyed"],
    }


def _processing(doc: Doc, view_doc: Doc | None) -> list[Doc]:
    held = sum(1 for c in doc["connections"] if c.get("ip") is not None)
    out = []
    record = processing_record()
    for entry in record["purposes"] + record["processings"]:
        applies, why = _applies(entry, view_doc, doc["consents"], doc["legal_holds"],
                                doc["documents"], held)
        out.append({
            "purpose": entry.get("purpose") or entry["processing"],
            "legal_basis": entry["legal_basis"], "categories": entry["categories"],
            "description": entry["description"], "policy_text": entry["policy_text"],
            "applies": applies, "why": why})
    return out


def export(bootstrap: str, conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
           now: datetime, reader: str, case_ref: str | None, policy: Policy,
           records: Sequence[Record] | None = None) -> Doc:
    """Everything about the subject in one machine-readable document (GDPR art. 15 and 20)."""
    now = ensure_utc(now, "now")
    catalogue = load_catalogue()
    found = folds.unique(records_of(bootstrap, subject_id, records))
    access_id = record_access(conn, reader, subject_id, case_ref or EXPORT_CASE,
                              "export (art. 15/20)", now)
    lookup = key_lookup(keystore, found, catalogue)
    plain = {r.event_id: reveal(r, lookup, catalogue).to_json()["data"] for r in found
             if catalogue.types[r.type].pii}
    view_doc = folds.as_of(found, now, policy, catalogue)
    view = (readable_only(render(view_doc, keystore, now, policy, include_retained=True))
            if view_doc else None)
    until = sharing_kept_until(found, policy, now)
    doc: Doc = {
        "format": EXPORT_FORMAT,
        "regulation": "GDPR art. 15 (access) and art. 20 (portability)",
        "subject_id": subject_id, "generated_at": format_instant(now), "access_id": access_id,
        **_account(found, plain, view_doc, view), **_consents(found, now, policy),
        **_sharing(found, until if until is not None and now >= until else None),
        **_records_section(found)}
    try:
        doc["retention"] = erasure_report(conn, keystore, subject_id, policy, now)
    except NoSuchSubject:  # the projection lags the log
        doc["retention"] = None
    doc["processing"] = _processing(doc, view_doc)
    doc["controller"] = processing_record()["controller"]
    doc["events"] = len(found)
    return _jsonable(doc)


def export_summary(doc: Doc) -> Doc:
    """A few lines about an export (for the demo and the text output)."""
    personal = doc["personal_data"]
    return {
        "subject_id": doc["subject_id"], "status": doc["account"]["status"],
        "events": doc["events"],
        "personal_fields_readable": sum(len(v or {}) for v in personal.values()),
        "connections": len(doc["connections"]),
        "consent_choices": len(doc["consent_history"]),
        "consents_now": {p: c["status"] for p, c in doc["consents"].items()},
        "authorisations": len(doc["authorisations"]),
        "disclosures": len(doc["disclosures"]),
        "unauthorised_disclosures": sum(1 for d in doc["disclosures"] if not d["authorised"]),
        "recipients": [r["recipient"] for r in doc["recipients"]],
        "documents": len(doc["documents"]),
        "erasure_certificates": len(doc["erasure_certificates"]),
        "purposes_applying": [p["purpose"] for p in doc["processing"] if p["applies"]],
    }

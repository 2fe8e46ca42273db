"""The compliance services: each answers one question of domain.md ("Questions the ledger
answers") for one subject, as one JSON-able document.

* ``consent``: from the consent-history projection (one indexed query, milliseconds);
* ``disclosures``, ``as_of``, ``export``: from the subject's own records in the log
  (`registre.replay`), folded by the pure functions of `processors.audit`;
* ``erasure``, ``schedule``: from `registre.erasure` (the erasure projections).

``as_of`` and ``export`` are restricted reads: each is recorded in the access log (who, when,
which subject, which case) and committed *before* anything is decrypted or returned. Personal
fields are decrypted only where their key still exists; a destroyed key leaves them out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import psycopg

from events.catalogue import Catalogue, load_catalogue
from events.codec import KeyLookup, Record, lookup_from, reveal
from events.keystore import KeyRef, KeyStore, key_period
from events.model import format_instant
from events.validation import InvalidEvent, _check_format, parse_instant
from processors import audit as folds
from processors.fold import CONSENT_MONTHS
from processors.timeutil import ensure_utc
from projections.access_log import MissingCaseReference, record_access
from projections.consent_history import consent_at_sql
from registre.errors import UserError
from registre.replay import subject_records
from registre.views import render

EXPORT_FORMAT = "registre-export/1"
EXPORT_CASE = "art-15-20-request"


class UnknownSubject(LookupError):
    """Nothing about this subject in the ledger (or in the projection asked)."""


class BadQuestion(ValueError):
    """A question that cannot be asked: unknown purpose, malformed instant or subject id."""


# --- the record of processing ---------------------------------------------------------------


@cache
def processing_record() -> dict[str, Any]:
    """`schemas/processing.json`: purpose -> legal basis, from the privacy policy."""
    text = resources.files("schemas").joinpath("processing.json").read_text(encoding="utf-8")
    return json.loads(text)


def purposes() -> tuple[str, ...]:
    return tuple(load_catalogue().named_types["registre.events.Purpose"]["symbols"])


def legal_basis(purpose: str) -> str:
    for entry in processing_record()["purposes"]:
        if entry["purpose"] == purpose:
            return entry["legal_basis"]
    raise BadQuestion(f"purpose {purpose!r} is missing from schemas/processing.json")


def consent_purposes() -> tuple[str, ...]:
    """The purposes that rest on consent (optimisation, personalised_ads, marketing, ...)."""
    return tuple(e["purpose"] for e in processing_record()["purposes"]
                 if e["legal_basis"] == "consent")


# --- arguments ------------------------------------------------------------------------------


def check_purpose(purpose: str) -> str:
    known = purposes()
    if purpose not in known:
        raise BadQuestion(f"unknown purpose {purpose!r} (known: {', '.join(known)})")
    return purpose


def check_subject(subject_id: str) -> str:
    try:
        _check_format("subject_id", subject_id, "subject")
    except InvalidEvent as exc:
        raise BadQuestion(f"{subject_id!r}: {exc.reason}") from None
    return subject_id


def parse_at(text: str, what: str = "--at") -> datetime:
    """An RFC 3339 instant with an offset (``2026-03-03T15:00:00+01:00``), in UTC."""
    try:
        return ensure_utc(parse_instant(text, what))
    except InvalidEvent as exc:
        raise BadQuestion(f"{what}: {exc.reason}") from None


def _require_case(case_ref: str | None) -> str:
    if not case_ref or not case_ref.strip():
        raise MissingCaseReference("a case reference is required for this read (--case)")
    return case_ref.strip()


def _commit(conn: psycopg.Connection) -> None:
    if not conn.autocommit:
        conn.commit()


def subject_known(conn: psycopg.Connection, subject_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM projections.customer_view WHERE subject_id = %s",
                       (subject_id,)).fetchone()
    return row is not None


def _records(bootstrap: str, subject_id: str, records: Sequence[Record] | None) -> list[Record]:
    found = list(records) if records is not None else subject_records(bootstrap, subject_id)
    if not found:
        raise UnknownSubject(f"{subject_id}: no such subject in the ledger")
    return found


# --- 1. consent -----------------------------------------------------------------------------


def consent(conn: psycopg.Connection, subject_id: str, purpose: str, at: datetime,
            months: int = CONSENT_MONTHS) -> dict[str, Any]:
    """Granted, refused, withdrawn, expired or none, with the event that proves it."""
    check_purpose(purpose)
    at = ensure_utc(at, "at")
    answer = consent_at_sql(conn, subject_id, purpose, at, months)
    if answer["status"] == "none" and not subject_known(conn, subject_id):
        raise UnknownSubject(f"{subject_id}: no such subject in the customer view")
    return {"subject_id": subject_id, "purpose": purpose, "at": format_instant(at),
            **answer, "legal_basis": legal_basis(purpose)}


# --- 2. disclosures -------------------------------------------------------------------------


def disclosures(bootstrap: str, subject_id: str,
                records: Sequence[Record] | None = None) -> list[dict[str, Any]]:
    """Who received the subject's data, which categories, when, on what basis, authorised?"""
    return folds.disclosures(_records(bootstrap, subject_id, records))


# --- 3. erasure and 6. schedule (registre.erasure) ------------------------------------------


def erasure(conn: psycopg.Connection, subject_id: str) -> dict[str, Any]:
    from registre.erasure import erasure_report

    return erasure_report(conn, subject_id)


def schedule(conn: psycopg.Connection, now: datetime, days: int) -> dict[str, Any]:
    from registre.erasure import schedule as due

    if days < 0:
        raise BadQuestion(f"--days must be 0 or more, got {days}")
    return due(conn, ensure_utc(now, "now"), days)


# --- 4. as of -------------------------------------------------------------------------------


def _prune(value: Any) -> Any:
    """Drop null leaves; an object or list left empty becomes None."""
    if isinstance(value, dict):
        out = {k: p for k, v in value.items() if (p := _prune(v)) is not None}
        return out or None
    return value


def _personal(rendered: dict[str, Any]) -> dict[str, Any]:
    """Leave out every personal field that did not decrypt (its key is gone)."""
    for group in ("identity", "contact"):
        rendered[group] = _prune(rendered.get(group))
    conn = rendered.get("last_connection")
    if conn:
        fields = {k: v for k, v in conn.items() if k not in ("at", "event_id")}
        rendered["last_connection"] = {"at": conn["at"], "event_id": conn["event_id"],
                                       **(_prune(fields) or {})}
    return rendered


def as_of(bootstrap: str, conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
          at: datetime, case_ref: str | None, reader: str, now: datetime,
          records: Sequence[Record] | None = None) -> dict[str, Any]:
    """The customer view as it stood at ``at``; the read is recorded first (case required)."""
    case = _require_case(case_ref)
    at = ensure_utc(at, "at")
    found = _records(bootstrap, subject_id, records)
    doc = folds.as_of(found, at)
    access_id = record_access(conn, reader, subject_id, case, f"as-of {format_instant(at)}",
                              ensure_utc(now, "now"))
    _commit(conn)
    view = None
    if doc is not None:
        view = _personal(render(doc, keystore, at, include_retained=True))
        view.pop("consent_details", None)
    return {"subject_id": subject_id, "at": format_instant(at), "case_ref": case,
            "access_id": access_id, "existed": doc is not None, "view": view}


# --- 5. export (art. 15 and 20) -------------------------------------------------------------


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


def _authorisations(records: list[Record]) -> list[dict[str, Any]]:
    order = {r.event_id: i for i, r in enumerate(records)}
    sharing = sorted((r for r in records if r.type in ("SharingAuthorised", "SharingRevoked")),
                     key=lambda r: (r.occurred_at, order[r.event_id]))
    out: list[dict[str, Any]] = []
    active: dict[str, dict[str, Any]] = {}
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


def _holds(records: list[Record]) -> list[dict[str, Any]]:
    holds: dict[str, dict[str, Any]] = {}
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


def _applies(entry: dict[str, Any], view: dict[str, Any] | None,
             consents: dict[str, dict[str, Any]], holds: list[dict[str, Any]],
             documents: list[dict[str, Any]], connections_held: int) -> tuple[bool, str]:
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


def export(bootstrap: str, conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
           now: datetime, reader: str, case_ref: str | None = None,
           months: int = CONSENT_MONTHS, records: Sequence[Record] | None = None
           ) -> dict[str, Any]:
    """Everything about the subject in one machine-readable document (GDPR art. 15 and 20)."""
    now = ensure_utc(now, "now")
    catalogue = load_catalogue()
    found = folds.unique(_records(bootstrap, subject_id, records))
    access_id = record_access(conn, reader, subject_id, case_ref or EXPORT_CASE,
                              "export (art. 15/20)", now)
    _commit(conn)
    lookup = key_lookup(keystore, found, catalogue)
    plain = {r.event_id: reveal(r, lookup, catalogue).to_json()["data"] for r in found
             if catalogue.types[r.type].pii}
    view_doc = folds.as_of(found, now, catalogue)
    view = (_personal(render(view_doc, keystore, now, include_retained=True))
            if view_doc else None)

    account_history = [
        {"at": format_instant(r.occurred_at), "type": r.type, "event_id": r.event_id,
         "fields": _prune({k: v for k, v in plain[r.event_id].items()
                           if k not in ("over_15", "notice_version")})}
        for r in found if r.type in ("AccountCreated", "AccountUpdated")]
    connections = [
        {"at": format_instant(r.occurred_at), "event_id": r.event_id,
         **(_prune(plain[r.event_id]) or {})}
        for r in found if r.type == "ConnectionRecorded"]
    consent_events = [
        {"at": format_instant(r.occurred_at), "type": r.type, "event_id": r.event_id,
         "status": folds.CHOICES.get(r.type, "expired"), "purposes": list(r.data["purposes"]),
         "notice_version": r.data.get("notice_version"), "mechanism": r.data.get("mechanism"),
         **({"choice_event_id": r.data["choice_event_id"]} if r.type == "ConsentExpired"
            else {})}
        for r in found if r.type in (*folds.CHOICES, "ConsentExpired")]
    asked = {p for r in found if r.type in folds.CHOICES for p in r.data["purposes"]}
    consents = {p: folds.consent_at(found, p, now, months)
                for p in sorted(set(consent_purposes()) | asked)}
    shared = folds.disclosures(found)
    recipients: dict[str, dict[str, Any]] = {}
    for d in shared:
        rec = recipients.setdefault(d["recipient"], {
            "recipient": d["recipient"], "recipient_kind": d["recipient_kind"],
            "categories": set(), "countries": set(), "disclosures": 0, "unauthorised": 0})
        rec["categories"] |= set(d["categories"])
        rec["countries"].add(d["country"])
        rec["disclosures"] += 1
        rec["unauthorised"] += 0 if d["authorised"] else 1
    documents = [{"kind": r.data["kind"], "document_ref": r.data["document_ref"],
                  "at": format_instant(r.occurred_at), "event_id": r.event_id}
                 for r in found if r.type == "DocumentIssued"]
    holds = _holds(found)
    certificates = [{"at": format_instant(r.occurred_at), "event_id": r.event_id,
                     **_jsonable(r.data)} for r in found if r.type == "ErasureCompleted"]
    destroyed = [{"at": format_instant(r.occurred_at), "event_id": r.event_id,
                  **_jsonable(r.data)} for r in found if r.type == "KeysDestroyed"]
    try:
        report = erasure(conn, subject_id)
    except (ImportError, UserError):  # no erasure module, or the projection lags the log
        report = None
    held = sum(1 for c in connections if c.get("ip") is not None)
    processing = []
    for entry in processing_record()["purposes"] + processing_record()["processings"]:
        applies, why = _applies(entry, view_doc, consents, holds, documents, held)
        processing.append({
            "purpose": entry.get("purpose") or entry["processing"],
            "legal_basis": entry["legal_basis"], "categories": entry["categories"],
            "description": entry["description"], "policy_text": entry["policy_text"],
            "applies": applies, "why": why})

    return _jsonable({
        "format": EXPORT_FORMAT,
        "regulation": "GDPR art. 15 (access) and art. 20 (portability)",
        "subject_id": subject_id,
        "generated_at": format_instant(now),
        "access_id": access_id,
        "account": {k: view_doc.get(k) if view_doc else None
                    for k in ("status", "has_account", "created_at", "deleted_at",
                              "erased_at")},
        "personal_data": {"identity": view["identity"] if view else None,
                          "contact": view["contact"] if view else None},
        "account_history": account_history,
        "connections": connections,
        "consents": consents,
        "consent_history": consent_events,
        "authorisations": _authorisations(found),
        "disclosures": shared,
        "recipients": [{**r, "categories": sorted(r["categories"]),
                        "countries": sorted(r["countries"])}
                       for _, r in sorted(recipients.items())],
        "documents": documents,
        "legal_holds": holds,
        "retention": report,
        "erasure_certificates": certificates,
        "keys_destroyed": destroyed,
        "processing": processing,
        "controller": processing_record()["controller"],
        "events": len(found),
    })


def export_summary(doc: dict[str, Any]) -> dict[str, Any]:
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

"""The compliance questions: each answers one question of domain.md ("Questions the ledger
answers") for one subject, as one JSON-able document.

* ``consent``: from the consent-history projection (one indexed query, milliseconds);
* ``disclosures``, ``as_of`` (and ``services.export``): from the subject's own records in the
  log (`registre.services.replay`), folded by the pure functions of `processors.rules.audit`;
* erasure and schedule: `registre.services.erasure`.

``as_of`` is a restricted read: it is recorded in the access log (who, when, which subject,
which case) and committed *before* anything is decrypted or returned. Personal fields are
decrypted only where their key still exists; a destroyed key leaves them out. Every duration
comes from the policy the caller passes (the loaded one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import psycopg

from events.catalogue import load_catalogue
from events.codec import Record
from events.keystore import KeyStore
from events.model import format_instant
from events.validation import InvalidEvent, check_format, parse_instant
from processors.rules import audit as folds
from processors.rules.erasure import facts_from_view
from processors.rules.policy import Policy
from processors.rules.retention import sharing_records_until
from processors.rules.timeutil import ensure_utc
from projections.access_log import checked_case, record_access
from projections.consent_history import consent_at_sql
from registre.services.replay import subject_records
from registre.services.views import readable_only, render


class UnknownSubject(LookupError):
    """Nothing about this subject in the ledger (or in the projection asked)."""


class BadQuestion(ValueError):
    """A question that cannot be asked: unknown purpose, malformed instant or subject id."""


class RecordsPastRetention(LookupError):
    """The records asked for are past the retention the policy gives them."""


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
        check_format("subject_id", subject_id, "subject")
    except InvalidEvent as exc:
        raise BadQuestion(f"{subject_id!r}: {exc.reason}") from None
    return subject_id


def parse_at(text: str, what: str = "--at") -> datetime:
    """An RFC 3339 instant with an offset (``2026-03-03T15:00:00+01:00``), in UTC."""
    try:
        return ensure_utc(parse_instant(text, what))
    except InvalidEvent as exc:
        raise BadQuestion(f"{what}: {exc.reason}") from None


def subject_known(conn: psycopg.Connection, subject_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM projections.customer_view WHERE subject_id = %s",
                       (subject_id,)).fetchone()
    return row is not None


def records_of(bootstrap: str, subject_id: str,
               records: Sequence[Record] | None = None) -> list[Record]:
    """The subject's records from the log (or those given); UnknownSubject when there are none."""
    found = list(records) if records is not None else subject_records(bootstrap, subject_id)
    if not found:
        raise UnknownSubject(f"{subject_id}: no such subject in the ledger")
    return found


# --- 1. consent -----------------------------------------------------------------------------


def consent(conn: psycopg.Connection, subject_id: str, purpose: str, at: datetime,
            policy: Policy) -> dict[str, Any]:
    """Granted, refused, withdrawn, expired or none, with the event that proves it."""
    check_purpose(purpose)
    at = ensure_utc(at, "at")
    answer = consent_at_sql(conn, subject_id, purpose, at, policy.consent_validity_months)
    if answer["status"] == "none" and not subject_known(conn, subject_id):
        raise UnknownSubject(f"{subject_id}: no such subject in the customer view")
    return {"subject_id": subject_id, "purpose": purpose, "at": format_instant(at),
            **answer, "legal_basis": legal_basis(purpose)}


# --- 2. disclosures -------------------------------------------------------------------------


def sharing_kept_until(records: Sequence[Record], policy: Policy,
                       now: datetime) -> datetime | None:
    """Until when the subject's sharing and disclosure records are kept (None: account live)."""
    view = folds.as_of(records, now, policy)
    return None if view is None else sharing_records_until(facts_from_view(view), policy)


def disclosures(bootstrap: str, subject_id: str, policy: Policy, now: datetime,
                records: Sequence[Record] | None = None) -> list[dict[str, Any]]:
    """Who received the subject's data, which categories, when, on what basis, authorised?

    Past the retention of sharing records (the end of the account + the policy's months) the
    answer is refused with that date: the records stay in the signed log, unanswered.
    """
    found = records_of(bootstrap, subject_id, records)
    until = sharing_kept_until(found, policy, now)
    if until is not None and now >= until:
        raise RecordsPastRetention(
            f"{subject_id}: sharing and disclosure records were kept until"
            f" {format_instant(until)} ({policy.sharing_records_after_end_months} months after"
            " the end of the account) and are no longer answered")
    return folds.disclosures(found)


# --- 4. as of -------------------------------------------------------------------------------


def as_of(bootstrap: str, conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
          at: datetime, case_ref: str | None, reader: str, now: datetime, policy: Policy,
          records: Sequence[Record] | None = None) -> dict[str, Any]:
    """The customer view as it stood at ``at``; the read is recorded first (case required)."""
    case = checked_case(case_ref)
    at = ensure_utc(at, "at")
    found = records_of(bootstrap, subject_id, records)
    doc = folds.as_of(found, at, policy)
    access_id = record_access(conn, reader, subject_id, case, f"as-of {format_instant(at)}",
                              ensure_utc(now, "now"))
    view = None
    if doc is not None:
        view = readable_only(render(doc, keystore, at, policy, include_retained=True))
        view.pop("consent_details", None)
        until = sharing_kept_until(found, policy, now)
        if until is not None and now >= until:  # judged now, not at ``at``
            view["authorisations"] = []
    return {"subject_id": subject_id, "at": format_instant(at), "case_ref": case,
            "access_id": access_id, "existed": doc is not None, "view": view}

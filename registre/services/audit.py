"""The compliance services: each answers one question of domain.md ("Questions the ledger
answers") for one subject, as one JSON-able document.

* ``consent``: from the consent-history projection (one indexed query, milliseconds);
* ``disclosures``, ``as_of`` (and ``services.export``): from the subject's own records in the log
  (`registre.services.replay`), folded by the pure functions of `processors.rules.audit`;
* ``erasure``, ``schedule``: from `registre.services.erasure` (the erasure projections).

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

from events.catalogue import load_catalogue
from events.codec import Record
from events.keystore import KeyStore
from events.model import format_instant
from events.validation import InvalidEvent, _check_format, parse_instant
from processors.rules import audit as folds
from processors.rules.fold import CONSENT_MONTHS
from processors.rules.timeutil import ensure_utc
from projections.access_log import MissingCaseReference, record_access
from projections.consent_history import consent_at_sql
from registre.services.replay import subject_records
from registre.services.views import render


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


# --- 3. erasure and 6. schedule (registre.services.erasure) ---------------------------


def erasure(conn: psycopg.Connection, subject_id: str) -> dict[str, Any]:
    from registre.services.erasure import erasure_report

    return erasure_report(conn, subject_id)


def schedule(conn: psycopg.Connection, now: datetime, days: int) -> dict[str, Any]:
    from registre.services.erasure import schedule as due

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

"""Compliance services for erasure and retention: the erasure audit, the retention schedule,
the sweep at any instant, legal holds, key-store backup and restore, restricted reads.

Every function takes the loaded policy and the instant it judges at: nothing here reads a
clock or a duration of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.keys import KeyRef
from events.keystore import KeyStore
from events.model import format_instant
from processors.rules.erasure import facts_from_view, plan
from processors.rules.policy import Policy
from processors.rules.retention import due_within, sharing_records_until
from projections import outbox
from projections.access_log import record_access
from projections.erasure_store import sweep
from projections.problems import open_problems, reason_of
from projections.queries import customer_view
from registre.files import write_private
from registre.services.views import render


class NoSuchSubject(LookupError):
    """No customer view for that subject."""


def _doc(conn: psycopg.Connection, subject: str) -> dict[str, Any]:
    doc = customer_view(conn, subject)
    if doc is None:
        raise NoSuchSubject(f"{subject}: no such subject in the ledger")
    return doc


def _iso(at: datetime | None) -> str | None:
    return format_instant(at) if at else None


def _destructions(conn: psycopg.Connection, subject_id: str
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(keys destroyed, erasure certificates) as recorded in the log."""
    rows = conn.execute(
        "SELECT event_id::text, kind, occurred_at, body FROM projections.erasures"
        " WHERE subject_id = %s ORDER BY occurred_at, event_id", (subject_id,)).fetchall()
    destroyed, certificates = [], []
    for event_id, kind, at, body in rows:
        if kind == "KeysDestroyed":
            destroyed += [{"category": k["category"], "period": k.get("period"),
                           "at": _iso(at), "reason": k["reason"], "event_id": event_id}
                          for k in body["keys"]]
        else:
            certificates.append({"event_id": event_id, "at": _iso(at), **body})
    return destroyed, certificates


def erasure_report(conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
                   policy: Policy, now: datetime) -> dict[str, Any]:
    """What was destroyed and when, what is kept, why and until when, and active holds."""
    doc = _doc(conn, subject_id)
    destroyed, certificates = _destructions(conn, subject_id)
    try:
        decision = plan(doc, keystore.key_refs(subject_id), policy, now).decision
        retained = [{"category": k.ref.category, "period": k.ref.period or None,
                     "until": _iso(k.until), "reason": k.reason, "held_by": list(k.held_by)}
                    for k in decision.keep]
        problem = None
    except ValueError as exc:  # a key the rules cannot place: said, not a traceback
        retained, problem = [], reason_of(exc)
    return {"subject_id": subject_id, "status": doc["status"], "problem": problem,
            "deleted_at": doc["deleted_at"], "erased_at": doc["erased_at"],
            "destroyed": destroyed, "retained": retained,
            "sharing_records_until": _iso(sharing_records_until(facts_from_view(doc), policy)),
            "holds": [{"case_ref": c, **h} for c, h in sorted(doc["holds"].items())],
            "certificates": certificates}


def _due_keys(subject: str, doc: dict[str, Any], keys: list[KeyRef], policy: Policy,
              now: datetime, days: int) -> list[dict[str, Any]]:
    return [{"subject_id": subject, "category": item.ref.category,
             "period": item.ref.period or None, "due_at": _iso(item.due_at),
             "held_by": list(getattr(item, "held_by", ())), "reason": item.reason}
            for item in due_within(facts_from_view(doc), keys, policy, now, days)]


def _due_records(subject: str, doc: dict[str, Any], policy: Policy, now: datetime,
                 days: int) -> list[dict[str, Any]]:
    """The subject's sharing records, when the end of their retention is within the horizon."""
    until = sharing_records_until(facts_from_view(doc), policy)
    if until is None or not now < until <= now + timedelta(days=days):
        return []
    months = policy.sharing_records_after_end_months
    return [{"subject_id": subject, "category": "sharing_records", "period": None,
             "due_at": _iso(until), "held_by": [],
             "reason": f"sharing and disclosure records are kept {months} months after the end"
                       " of the account; from then on they are no longer shown or answered"}]


def schedule(conn: psycopg.Connection, keystore: KeyStore, now: datetime, days: int,
             policy: Policy) -> dict[str, Any]:
    """Destructions due in the next ``days`` days, the active holds, and the subjects whose
    erasure or sweep failed (retried by the processors until it succeeds)."""
    keys = keystore.all_key_refs()
    due, holds = [], []
    unplanned = []
    for subject, doc in conn.execute(
            "SELECT subject_id, doc FROM projections.customer_view ORDER BY subject_id"):
        try:
            due += _due_keys(subject, doc, keys.get(subject, []), policy, now, days)
        except ValueError as exc:  # one subject's bad key stops nobody else's schedule
            unplanned.append({"subject_id": subject, "job": "schedule",
                              "reason": reason_of(exc)})
        if doc["status"] != "active":
            due += _due_records(subject, doc, policy, now, days)
        holds += [{"subject_id": subject, "case_ref": c, **h}
                  for c, h in sorted(doc["holds"].items())]
    due.sort(key=lambda d: (d["due_at"] or "", d["subject_id"], d["category"]))
    return {"now": _iso(now), "days": days, "due": due, "holds": holds,
            "problems": open_problems(conn) + unplanned}


def publish_outbox(publisher: Any, database_url: str) -> int:
    """Publish what the outbox holds now (the processors do it too; duplicates are harmless)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return outbox.drain(conn, publisher.send_encoded)


def sweep_now(database_url: str, publisher: Any, policy: Policy, now: datetime,
              signer: Ed25519PrivateKey) -> dict:
    """`registre retention sweep`: destroy what is due at ``now``; record it in the log
    (signed with the ledger's key, as the processors sign)."""

    async def run() -> list:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            return await sweep(c, policy, now, signer)

    events = asyncio.run(run())
    publish_outbox(publisher, database_url)
    destroyed = [{"subject_id": e.subject_id, **k} for e in events if e.type == "KeysDestroyed"
                 for k in e.to_json()["data"]["keys"]]
    expired = [{"subject_id": e.subject_id, "purposes": list(e.data["purposes"])}
               for e in events if e.type == "ConsentExpired"]
    return {"now": _iso(now), "destroyed": destroyed, "consents_expired": expired}


def hold_event(subject: str, case_ref: str, now: datetime, reason: str | None = None,
               categories: list[str] | None = None) -> dict[str, Any]:
    """A LegalHoldPlaced (with reason) or LegalHoldReleased event in canonical JSON form."""
    data: dict[str, Any] = {"case_ref": case_ref}
    if reason is not None:
        data.update(reason=reason, categories=categories or None)
    return {"event_id": str(uuid.uuid4()),
            "type": "LegalHoldPlaced" if reason is not None else "LegalHoldReleased",
            "subject_id": subject, "occurred_at": format_instant(now),
            "source": "registre-compliance", "data": data}


def erasure_event(subject: str, now: datetime, requested_by: str = "subject"
                  ) -> dict[str, Any]:
    """An ErasureRequested event in canonical JSON form (recorded by compliance staff)."""
    return {"event_id": str(uuid.uuid4()), "type": "ErasureRequested", "subject_id": subject,
            "occurred_at": format_instant(now), "source": "registre-compliance",
            "data": {"requested_by": requested_by}}


def backup_keys(keystore: KeyStore, path: Path) -> int:
    """Every wrapped key to ``path``: created 0600 before the first byte, written whole."""
    rows = keystore.backup()
    write_private(path, "".join(
        json.dumps({"subject_id": s, "category": c, "period": p, "version": v,
                    "wrapped": base64.b64encode(bytes(w)).decode()}) + "\n"
        for s, c, p, v, w in rows))
    return len(rows)


class BadBackup(ValueError):
    """A key backup file that cannot be read back."""


def restore_keys(keystore: KeyStore, path: Path) -> dict[str, int]:
    rows = []
    with path.open() as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                rows.append((r["subject_id"], r["category"], r["period"], int(r["version"]),
                             base64.b64decode(r["wrapped"], validate=True)))
            except (ValueError, KeyError, TypeError) as exc:
                raise BadBackup(f"{path}: line {n}: not a key backup row ({exc})") from None
    restored, again = keystore.restore(rows)
    return {"restored": restored, "destroyed_again": again}


def read_retained(conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
                  reader: str, case_ref: str, now: datetime, policy: Policy) -> dict[str, Any]:
    """The compliance path: the view with what is retained after deletion, read recorded."""
    doc = _doc(conn, subject_id)
    record_access(conn, reader, subject_id, case_ref, "retained personal data", now)
    return render(doc, keystore, now, policy, include_retained=True)

"""Compliance services for erasure and retention: the erasure audit, the retention schedule,
the sweep at any instant, legal holds, key-store backup and restore, restricted reads."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaProducer

from events.keystore import KeyRef, KeyStore
from events.model import format_instant
from processors.rules.erasure import facts_from_view, plan
from processors.rules.policy import Policy, policy_from_env
from processors.rules.retention import due_within
from projections import outbox
from projections.access_log import record_access
from projections.erasure_store import sweep
from projections.queries import customer_view
from registre.cli.errors import UserError
from registre.services.views import render


def _keys(conn: psycopg.Connection, subject: str) -> list[KeyRef]:
    rows = conn.execute("SELECT DISTINCT category, period FROM keystore.data_keys"
                        " WHERE subject_id = %s", (subject,)).fetchall()
    return [KeyRef(subject, c, p) for c, p in rows]


def _doc(conn: psycopg.Connection, subject: str) -> dict[str, Any]:
    doc = customer_view(conn, subject)
    if doc is None:
        raise UserError(f"{subject}: no such subject in the ledger")
    return doc


def _iso(at: datetime | None) -> str | None:
    return format_instant(at) if at else None


def erasure_report(conn: psycopg.Connection, subject_id: str, policy: Policy | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
    """What was destroyed and when, what is kept, why and until when, and active holds."""
    policy = policy or policy_from_env()
    now = now or datetime.now(UTC)
    doc = _doc(conn, subject_id)
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
    decision = plan(doc, _keys(conn, subject_id), policy, now).decision
    retained = [{"category": k.ref.category, "period": k.ref.period or None,
                 "until": _iso(k.until), "reason": k.reason, "held_by": list(k.held_by)}
                for k in decision.keep]
    return {"subject_id": subject_id, "status": doc["status"],
            "deleted_at": doc["deleted_at"], "erased_at": doc["erased_at"],
            "destroyed": destroyed, "retained": retained,
            "holds": [{"case_ref": c, **h} for c, h in sorted(doc["holds"].items())],
            "certificates": certificates}


def schedule(conn: psycopg.Connection, now: datetime, days: int,
             policy: Policy | None = None) -> dict[str, Any]:
    """Destructions due in the next ``days`` days, and the active holds."""
    policy = policy or policy_from_env()
    due, holds = [], []
    for subject, doc in conn.execute(
            "SELECT v.subject_id, v.doc FROM projections.customer_view v"
            " WHERE EXISTS (SELECT 1 FROM keystore.data_keys k WHERE k.subject_id = v.subject_id)"
            " ORDER BY v.subject_id").fetchall():
        facts = facts_from_view(doc)
        for item in due_within(facts, _keys(conn, subject), policy, now, days):
            due.append({"subject_id": subject, "category": item.ref.category,
                        "period": item.ref.period or None, "due_at": _iso(item.due_at),
                        "held_by": list(getattr(item, "held_by", ())),
                        "reason": item.reason})
        holds += [{"subject_id": subject, "case_ref": c, **h}
                  for c, h in sorted(doc["holds"].items())]
    due.sort(key=lambda d: (d["due_at"] or "", d["subject_id"], d["category"]))
    return {"now": _iso(now), "days": days, "due": due, "holds": holds}


def _send_with(bootstrap: str):  # noqa: ANN202 - returns outbox's sender
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             client_id="registre-cli", max_block_ms=10_000)

    def send(rows: list[outbox.Row]) -> None:
        futures = [producer.send(topic, key=key, value=value, headers=headers)
                   for _, topic, key, value, headers in rows]
        producer.flush()
        for f in futures:
            f.get(timeout=30)

    return producer, send


def publish_outbox(bootstrap: str, database_url: str) -> int:
    """Publish what the outbox holds now (the processors do it too; duplicates are harmless)."""
    producer, send = _send_with(bootstrap)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return outbox.drain(conn, send)
    finally:
        producer.close()


def sweep_now(bootstrap: str, database_url: str, policy: Policy, now: datetime) -> dict:
    """`registre retention sweep`: destroy what is due at ``now``; record it in the log."""

    async def run() -> list:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            return await sweep(c, policy, now)

    events = asyncio.run(run())
    publish_outbox(bootstrap, database_url)
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


def backup_keys(keystore: KeyStore, path: Path) -> int:
    rows = keystore.backup()
    with path.open("w") as fh:
        for s, c, p, v, w in rows:
            fh.write(json.dumps({"subject_id": s, "category": c, "period": p, "version": v,
                                 "wrapped": base64.b64encode(bytes(w)).decode()}) + "\n")
    path.chmod(0o600)
    return len(rows)


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
                raise UserError(f"{path}: line {n}: not a key backup row ({exc})") from None
    restored, again = keystore.restore(rows)
    return {"restored": restored, "destroyed_again": again}


def read_retained(conn: psycopg.Connection, keystore: KeyStore, subject_id: str,
                  reader: str, case_ref: str, now: datetime) -> dict[str, Any]:
    """The compliance path: the view with what is retained after deletion, read recorded."""
    doc = _doc(conn, subject_id)
    record_access(conn, reader, subject_id, case_ref, "retained personal data", now)
    return render(doc, keystore, now, include_retained=True)

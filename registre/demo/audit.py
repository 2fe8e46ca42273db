"""The demo's audit chapter: each compliance question answered for subjects of the demo day.

`chapter(demo)` runs after the story (the website day is published and applied): consent at
an instant for a subject who withdrew, disclosures with an unauthorised one, the view as of an
instant under a case reference (and the access log that recorded it), the art. 15/20 export,
the retention schedule and the integrity check of the whole log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from events.model import format_instant
from processors.rules import audit as folds
from processors.rules.policy import policy_from_env
from projections.access_log import accesses
from projections.queries import subjects_sample
from registre import bootstrap as app
from registre.demo import Demo
from registre.services import audit, export
from registre.services.replay import subject_records

AT = "2026-03-03T15:00:00+01:00"
CASE = "LIT-2026-0303"
SCHEDULE_DAYS = 180


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"]).astimezone(UTC)


def _by_subject(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e["subject_id"], []).append(e)
    return dict(sorted(out.items()))


def _withdrawer(demo: Demo, at: datetime) -> tuple[str, dict[str, Any]]:
    """A subject who withdrew a consent, preferably before ``at``: (subject, withdrawal)."""
    found = [(s, e) for s, evs in _by_subject(demo.events).items() for e in evs
             if e["type"] == "ConsentWithdrawn"]
    if not found:
        raise LookupError("the demo day has no withdrawal")
    before = [(s, e) for s, e in found if _at(e) <= at]
    return (before or found)[0]


def _unauthorised(demo: Demo) -> str | None:
    for s, evs in _by_subject(demo.events).items():
        revoked = [_at(e) for e in evs if e["type"] == "SharingRevoked"]
        if revoked and any(e["type"] == "DataShared" and _at(e) > min(revoked) for e in evs):
            return s
    return None


def chapter(demo: Demo) -> None:
    kafka, database_url = demo.settings.endpoints()
    months = policy_from_env(demo.settings.env).consent_validity_months
    now = datetime.now(UTC)
    at = datetime.fromisoformat(AT)
    with psycopg.connect(database_url, autocommit=True) as conn, \
            app.open_keystore(demo.settings) as keystore:
        # 1. consent at an instant
        subject, withdrawal = _withdrawer(demo, at)
        purpose = withdrawal["data"]["purposes"][0]
        answer = audit.consent(conn, subject, purpose, at, months)
        records = subject_records(kafka, subject)
        pure = folds.consent_at(records, purpose, at, months)
        before = audit.consent(conn, subject, purpose, _at(withdrawal) - timedelta(seconds=1),
                               months)
        demo.show(f"audit consent {subject} --purpose {purpose} --at {AT}", answer)
        agree = "yes" if pure == {k: answer[k] for k in pure} else "NO"
        demo.say(f"one second before the withdrawal ({format_instant(_at(withdrawal))}) it was "
                 f"{before['status']} (event {before['event_id']}); the projection and a full "
                 f"replay of the log agree: {agree}")

        # 2. disclosures
        flagged = _unauthorised(demo)
        if flagged:
            shown = audit.disclosures(kafka, flagged)
            demo.show(f"audit disclosures {flagged}",
                      [{k: d[k] for k in ("recipient", "categories", "basis", "occurred_at",
                                          "authorised", "reason")} for d in shown])
            bad = sum(1 for d in shown if not d["authorised"])
            demo.say(f"{bad} of {len(shown)} disclosure(s) of {flagged} made without an active "
                     "authorisation: flagged, kept in the log")

        # 4. as of an instant, under a case reference
        deleted = demo.pick(lambda evs: any(e["type"] == "AccountDeleted" for e in evs))
        mine = [e for e in demo.events if e["subject_id"] == deleted]
        created = min(_at(e) for e in mine if e["type"] == "AccountCreated")
        ended = min(_at(e) for e in mine if e["type"] == "AccountDeleted")
        when = (created + (ended - created) / 2).replace(microsecond=0)
        past = audit.as_of(kafka, conn, keystore, deleted, when, CASE, "demo-dpo", now)
        view = past["view"] or {}
        demo.show(f"audit as-of {deleted} --at {format_instant(when)} --case {CASE}",
                  {"existed": past["existed"], "status": view.get("status"),
                   "identity": view.get("identity"), "contact": view.get("contact"),
                   "consents": view.get("consents")})
        demo.say(f"{deleted} deleted their account at {format_instant(ended)}: personal fields "
                 "appear only where keys still exist; the read went to the access log first:")
        demo.show(f"access log of {deleted}", accesses(conn, deleted))

        # 5. access and portability
        active = subject
        doc = export.export(kafka, conn, keystore, active, now, "demo-dpo", "REQ-DEMO-15")
        demo.show(f"export {active} (summary of the art. 15/20 document)",
                  export.export_summary(doc))
        for erased in subjects_sample(conn, "erased", 1):
            gone = export.export_summary(export.export(kafka, conn, keystore, erased, now,
                                                     "demo-dpo", "REQ-DEMO-17"))
            demo.say(f"export {erased} (erased): {gone['personal_fields_readable']} personal "
                     f"field(s) readable, {gone['events']} events, "
                     f"{gone['erasure_certificates']} erasure certificate(s)")

        # 6. retention schedule
        try:
            due = audit.schedule(conn, now, SCHEDULE_DAYS)
        except ImportError:
            due = None
        if due is not None:
            demo.show(f"audit schedule --days {SCHEDULE_DAYS}", {
                "now": due["now"], "days": due["days"], "destructions_due": len(due["due"]),
                "first": due["due"][:3], "active_holds": due["holds"][:5]})

    # 7. integrity
    try:
        from registre.services.verify import verify
    except ImportError:
        return
    result = verify(kafka, database_url, app.master_key(demo.settings))
    demo.show("verify", {"ok": result.ok, "records_checked": result.records_checked,
                         "first_bad": result.first_bad, "reason": result.reason})

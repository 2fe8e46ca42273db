"""The demo's audit chapter: each compliance question answered for subjects of the demo day.

It runs after the story (the website day is published and applied): consent at an instant for
a subject who withdrew, disclosures with an unauthorised one, the view as of an instant under a
case reference (and the access log that recorded it), the art. 15/20 export, the retention
schedule and the integrity check of the whole log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from events.model import format_instant
from processors.rules import audit as folds
from projections.access_log import accesses
from projections.queries import subjects_sample
from registre.demo.stage import Demo, by_subject
from registre.services.export import export_summary
from registre.services.replay import subject_records

AT = "2026-03-03T15:00:00+01:00"
CASE = "LIT-2026-0303"
SCHEDULE_DAYS = 180


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"]).astimezone(UTC)


def _withdrawer(demo: Demo, at: datetime) -> tuple[str, dict[str, Any]]:
    """A subject who withdrew a consent, preferably before ``at``: (subject, withdrawal)."""
    found = [(s, e) for s, evs in by_subject(demo.events).items() for e in evs
             if e["type"] == "ConsentWithdrawn"]
    if not found:
        raise LookupError("the demo day has no withdrawal")
    before = [(s, e) for s, e in found if _at(e) <= at]
    return (before or found)[0]


def _unauthorised(demo: Demo) -> str | None:
    for s, evs in by_subject(demo.events).items():
        revoked = [_at(e) for e in evs if e["type"] == "SharingRevoked"]
        if revoked and any(e["type"] == "DataShared" and _at(e) > min(revoked) for e in evs):
            return s
    return None


def chapter(demo: Demo) -> None:
    subject = consent_at_an_instant(demo)
    disclosures(demo)
    as_of(demo)
    exports(demo, subject)
    schedule(demo)
    integrity(demo)


def consent_at_an_instant(demo: Demo) -> str:
    """1. What did this person consent to at that instant? Projection and log replay agree."""
    at = datetime.fromisoformat(AT)
    subject, withdrawal = _withdrawer(demo, at)
    purpose = withdrawal["data"]["purposes"][0]
    answer = demo.desk.consent(subject, purpose, at)
    months = demo.registre.policy.consent_validity_months
    pure = folds.consent_at(subject_records(demo.registre.kafka, subject), purpose, at, months)
    before = demo.desk.consent(subject, purpose, _at(withdrawal) - timedelta(seconds=1))
    demo.show(f"audit consent {subject} --purpose {purpose} --at {AT}", answer)
    agree = "yes" if pure == {k: answer[k] for k in pure} else "NO"
    demo.say(f"one second before the withdrawal ({format_instant(_at(withdrawal))}) it was "
             f"{before['status']} (event {before['event_id']}); the projection and a full "
             f"replay of the log agree: {agree}")
    return subject


def disclosures(demo: Demo) -> None:
    """2. Who received the data; unauthorised disclosures flagged."""
    flagged = _unauthorised(demo)
    if not flagged:
        return
    shown = demo.desk.disclosures(flagged)
    demo.show(f"audit disclosures {flagged}",
              [{k: d[k] for k in ("recipient", "categories", "basis", "occurred_at",
                                  "authorised", "reason")} for d in shown])
    bad = sum(1 for d in shown if not d["authorised"])
    demo.say(f"{bad} of {len(shown)} disclosure(s) of {flagged} made without an active "
             "authorisation: flagged, kept in the log")


def as_of(demo: Demo) -> None:
    """4. The view as it stood at an instant, under a case reference (the read recorded)."""
    deleted = demo.pick(lambda evs: any(e["type"] == "AccountDeleted" for e in evs))
    mine = [e for e in demo.events if e["subject_id"] == deleted]
    created = min(_at(e) for e in mine if e["type"] == "AccountCreated")
    ended = min(_at(e) for e in mine if e["type"] == "AccountDeleted")
    when = (created + (ended - created) / 2).replace(microsecond=0)
    past = demo.desk.as_of(deleted, when, CASE)
    view = past["view"] or {}
    demo.show(f"audit as-of {deleted} --at {format_instant(when)} --case {CASE}",
              {"existed": past["existed"], "status": view.get("status"),
               "identity": view.get("identity"), "contact": view.get("contact"),
               "consents": view.get("consents")})
    demo.say(f"{deleted} deleted their account at {format_instant(ended)}: personal fields "
             "appear only where keys still exist; the read went to the access log first:")
    with demo.registre.connect() as conn:
        demo.show(f"access log of {deleted}", accesses(conn, deleted))


def exports(demo: Demo, active: str) -> None:
    """5. Access and portability: the art. 15/20 document, of a live and an erased subject."""
    doc = demo.desk.export(active, "REQ-DEMO-15")
    demo.show(f"export {active} (summary of the art. 15/20 document)", export_summary(doc))
    with demo.registre.connect() as conn:
        erased = subjects_sample(conn, "erased", 1)
    for subject in erased:
        gone = export_summary(demo.desk.export(subject, "REQ-DEMO-17"))
        demo.say(f"export {subject} (erased): {gone['personal_fields_readable']} personal "
                 f"field(s) readable, {gone['events']} events, "
                 f"{gone['erasure_certificates']} erasure certificate(s)")


def schedule(demo: Demo) -> None:
    """6. What falls due in the next months, and the active holds."""
    due = demo.desk.schedule(SCHEDULE_DAYS)
    demo.show(f"audit schedule --days {SCHEDULE_DAYS}", {
        "now": due["now"], "days": due["days"], "destructions_due": len(due["due"]),
        "first": due["due"][:3], "active_holds": due["holds"][:5]})


def integrity(demo: Demo) -> None:
    """7. The whole log against its signed checkpoints."""
    result = demo.desk.verify()
    demo.show("verify", {k: result[k] for k in ("ok", "records_checked", "first_bad",
                                                "reason")})

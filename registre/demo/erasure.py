"""The demo's erasure chapter: an erasure without a document, a deletion with an invoice
(identity kept for compliance, each read recorded), and a legal hold placed then released."""

from __future__ import annotations

import uuid
from typing import Any

from events.model import format_instant
from registre.demo.stage import Demo, types


def _event(demo: Demo, kind: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
            "occurred_at": format_instant(demo.registre.clock()), "source": "website-accounts",
            "data": data}


def _report(demo: Demo, subject: str) -> dict[str, Any]:
    report = demo.desk.erasure(subject)
    report.pop("certificates", None)
    return report


def _active(evs: list[dict[str, Any]]) -> bool:
    return "AccountDeleted" not in types(evs) and "AccountCreated" in types(evs)


def chapter(demo: Demo) -> None:
    plain = demo.pick(lambda evs: _active(evs) and "DocumentIssued" not in types(evs))
    invoiced = demo.pick(lambda evs: _active(evs) and "DocumentIssued" in types(evs))
    held = demo.pick(lambda evs: _active(evs) and "DocumentIssued" not in types(evs)
                     and evs[0]["subject_id"] != plain)
    erasure_without_document(demo, plain)
    deletion_with_invoice(demo, invoiced)
    hold_then_release(demo, held)


def erasure_without_document(demo: Demo, subject: str) -> None:
    demo.say(f"{subject} asks for erasure (no document): keys {', '.join(demo.keys(subject))}")
    demo.publish([_event(demo, "ErasureRequested", subject, {"requested_by": "subject"})])
    demo.wait()
    demo.say(f"after `registre wait`, {subject} has keys: {demo.keys(subject) or 'none'}")
    demo.show(f"view of {subject} after erasure", demo.view(subject))
    demo.show(f"erasure audit of {subject}", _report(demo, subject))


def deletion_with_invoice(demo: Demo, subject: str) -> None:
    demo.publish([_event(demo, "AccountDeleted", subject, {"requested_by": "subject"})])
    demo.wait()
    demo.say(f"{subject} (invoiced) deleted their account: keys left "
             f"{', '.join(demo.keys(subject))}")
    demo.show(f"erasure audit of {subject}", _report(demo, subject))
    retained = demo.desk.retained(subject, "DEMO-CASE-1")
    demo.say(f"compliance read of {subject}'s retained identity (recorded in the access log,"
             f" case DEMO-CASE-1): last name readable = {bool(retained['identity'])}")


def hold_then_release(demo: Demo, subject: str) -> None:
    demo.desk.place_hold(subject, "DEMO-LIT-7", "dispute")
    demo.publish([_event(demo, "AccountDeleted", subject, {"requested_by": "operator"})])
    demo.wait()
    demo.say(f"{subject} is under hold DEMO-LIT-7 and deleted: keys kept "
             f"{', '.join(demo.keys(subject))}")
    demo.desk.release_hold(subject, "DEMO-LIT-7")
    demo.wait()
    demo.say(f"hold DEMO-LIT-7 released: {subject} has keys {demo.keys(subject) or 'none'}")

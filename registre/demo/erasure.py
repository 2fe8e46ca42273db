"""The demo's erasure chapter: an erasure without a document, a deletion with an invoice
(identity kept for compliance, each read recorded), and a legal hold placed then released."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from events.model import format_instant
from registre import bootstrap as app
from registre.demo import Demo, _types
from registre.services.erasure import erasure_report, hold_event, read_retained


def _event(kind: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
            "occurred_at": format_instant(datetime.now(UTC)), "source": "website-accounts",
            "data": data}


def _keys(demo: Demo, subject: str) -> list[str]:
    _, url = demo.settings.endpoints()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT category, period FROM keystore.data_keys WHERE"
                            " subject_id = %s ORDER BY 1, 2", (subject,)).fetchall()
    return [f"{c}{'/' + p if p else ''}" for c, p in rows]


def _report(demo: Demo, subject: str) -> dict[str, Any]:
    _, url = demo.settings.endpoints()
    with psycopg.connect(url) as conn:
        report = erasure_report(conn, subject)
    report.pop("certificates", None)
    return report


def chapter(demo: Demo) -> None:
    def active(evs: list[dict[str, Any]]) -> bool:
        return "AccountDeleted" not in _types(evs) and "AccountCreated" in _types(evs)

    plain = demo.pick(lambda evs: active(evs) and "DocumentIssued" not in _types(evs))
    invoiced = demo.pick(lambda evs: active(evs) and "DocumentIssued" in _types(evs))
    held = demo.pick(lambda evs: active(evs) and "DocumentIssued" not in _types(evs)
                     and evs[0]["subject_id"] != plain)

    demo.say(f"{plain} asks for erasure (no document): keys {', '.join(_keys(demo, plain))}")
    demo.publish([_event("ErasureRequested", plain, {"requested_by": "subject"})])
    demo.wait()
    demo.say(f"after `registre wait`, {plain} has keys: {_keys(demo, plain) or 'none'}")
    demo.show(f"view of {plain} after erasure", demo.view(plain))
    demo.show(f"erasure audit of {plain}", _report(demo, plain))

    demo.publish([_event("AccountDeleted", invoiced, {"requested_by": "subject"})])
    demo.wait()
    demo.say(f"{invoiced} (invoiced) deleted their account: keys left "
             f"{', '.join(_keys(demo, invoiced))}")
    demo.show(f"erasure audit of {invoiced}", _report(demo, invoiced))
    _, url = demo.settings.endpoints()
    with psycopg.connect(url, autocommit=True) as conn, app.open_keystore(demo.settings) as ks:
        retained = read_retained(conn, ks, invoiced, "demo-dpo", "DEMO-CASE-1",
                                 datetime.now(UTC))
    demo.say(f"compliance read of {invoiced}'s retained identity (recorded in the access log,"
             f" case DEMO-CASE-1): last name readable = {bool(retained['identity'])}")

    with app.open_publisher(demo.settings) as publisher:
        publisher.publish(hold_event(held, "DEMO-LIT-7", datetime.now(UTC), "dispute"))
    demo.publish([_event("AccountDeleted", held, {"requested_by": "operator"})])
    demo.wait()
    demo.say(f"{held} is under hold DEMO-LIT-7 and deleted: keys kept "
             f"{', '.join(_keys(demo, held))}")
    with app.open_publisher(demo.settings) as publisher:
        publisher.publish(hold_event(held, "DEMO-LIT-7", datetime.now(UTC)))
    demo.wait()
    demo.say(f"hold DEMO-LIT-7 released: {held} has keys {_keys(demo, held) or 'none'}")

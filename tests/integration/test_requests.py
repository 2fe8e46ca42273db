"""Data-subject requests end to end: `registre requests ...` against a real broker, a real
PostgreSQL and a real worker process. Deadlines come from the log, the lists follow the
caller's clock, a refused extension is refused at once by the command and dead-lettered with
its reason when published anyway, completed erasure and access requests show their matching
erasure or export, and `registre rebuild` gives the same projection."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import workers as w

from events.keystore import KeyStore
from events.model import format_instant
from processors.rules.timeutil import add_months
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration

ACCESS, ERASED, LATE, OVERDUE, RECTIFY = (
    "acc-500001", "acc-500002", "vis-500003", "acc-500004", "acc-500005")


class Desk:
    """The command line, pointed at the test's broker and database."""

    def __init__(self, broker: str, database_url: str, master_key: bytes, home: Path) -> None:
        self.broker, self.database_url = broker, database_url
        self.env = w.client_env(broker, database_url, master_key, home)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([REGISTRE, *args], env=self.env, capture_output=True, text=True,
                              timeout=60, cwd=w.ROOT)

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, (args, done.stderr)
        return json.loads(done.stdout)

    def refused(self, needle: str, *args: str) -> str:
        """The command fails in one line naming ``needle``, and publishes nothing."""
        before = sum(w.log_ends(self.broker).values())
        done = self.run(*args)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert needle in lines[0], lines[0]
        assert sum(w.log_ends(self.broker).values()) == before
        return lines[0]

    def rows(self) -> list[tuple]:
        return w.query(self.database_url,
                       "SELECT subject_id, request_id::text, kind, channel, received_at,"
                       " deadline, extended_months, completed_at, outcome, doc"
                       " FROM projections.requests ORDER BY 1, 2")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def received(subject: str, at: str, kind: str, request_id: str | None = None) -> dict:
    return w.event("RequestReceived", subject, at, {
        "request_id": request_id or str(uuid.uuid4()), "kind": kind, "channel": "post",
        "identity_verified": True}, source="registre-compliance")


@pytest.fixture
def desk(broker: str, database_url: str, master_key: bytes, keystore: KeyStore, tmp_path: Path):
    with w.Worker(broker, database_url, master_key, tmp_path / "home") as worker:
        d = Desk(broker, database_url, master_key, tmp_path / "home")
        d.keystore, d.worker = keystore, worker
        yield d


def applied(desk: Desk) -> None:
    w.wait_applied(desk.broker, desk.database_url, workers=[desk.worker])


def test_a_request_from_receipt_to_answer(desk: Desk) -> None:
    opened = desk.json("requests", "open", ACCESS, "--kind", "access", "--channel", "email",
                       "--identity-verified")
    assert opened["published"] == "RequestReceived" and opened["status"] == "open"
    assert utc(opened["deadline"]) == add_months(utc(opened["received_at"]), 1)
    rectify = desk.json("requests", "open", RECTIFY, "--kind", "rectification", "--channel",
                        "web_form", "--received-at", w.ago(days=3))
    assert rectify["identity_verified"] is False
    overdue = received(OVERDUE, w.ago(days=62), "objection")  # through the publisher
    w.publish(desk.broker, desk.keystore, [overdue])
    applied(desk)

    listed = desk.json("requests", "list", "--status", "open")
    assert [r["request_id"] for r in listed["requests"]] == [rectify["request_id"],
                                                            opened["request_id"]]
    assert listed["counts"] == {"open": 2, "overdue": 1, "done": 0}
    assert listed["requests"][1] == {**{k: v for k, v in opened.items()
                                        if k not in ("published", "event_id")},
                                     "expects": None, "matching": None, "problem": None}
    late = desk.json("requests", "list", "--overdue")["requests"]
    assert [(r["subject_id"], r["status"], r["late"]) for r in late] == [
        (OVERDUE, "overdue", True)]
    assert utc(late[0]["deadline"]) == add_months(utc(overdue["occurred_at"]), 1)

    extended = desk.json("requests", "extend", opened["request_id"], "--months", "2",
                         "--reason", "records held by several services")
    assert utc(extended["deadline"]) == add_months(utc(opened["received_at"]), 3)
    applied(desk)
    shown = desk.json("requests", "show", opened["request_id"])
    assert shown["deadline"] == extended["deadline"] and shown["status"] == "open"
    assert shown["extension"]["months"] == 2
    assert shown["extension"]["event_id"] == extended["event_id"]

    done = desk.json("requests", "complete", request_of(desk, OVERDUE), "--outcome", "refused",
                     "--reason", "manifestly unfounded")
    applied(desk)
    assert (done["status"], done["late"], done["outcome"]) == ("done", True, "refused")
    finished = desk.json("requests", "list", "--status", "done")
    assert [r["subject_id"] for r in finished["requests"]] == [OVERDUE]
    assert finished["counts"] == {"open": 2, "overdue": 0, "done": 1}
    text = desk.run("requests", "list")
    assert text.returncode == 0 and "2 open, 0 overdue, 1 done" in text.stdout
    assert "refused LATE" in text.stdout and "(extended 2 month(s))" in text.stdout
    check_projection_is_the_view(desk)


def request_of(desk: Desk, subject: str) -> str:
    """The id of the subject's one request, read from the projection."""
    [(request_id,)] = w.query(desk.database_url, "SELECT request_id::text FROM"
                              " projections.requests WHERE subject_id = %s", (subject,))
    return request_id


def check_projection_is_the_view(desk: Desk) -> None:
    """Every row of projections.requests is the entry the fold keeps in the customer view."""
    rows = desk.rows()
    assert rows
    for subject, request_id, kind, channel, received_at, deadline, months, completed, outcome, \
            doc in rows:
        view = w.scalar(desk.database_url, "SELECT doc FROM projections.customer_view"
                        " WHERE subject_id = %s", (subject,))
        assert view["requests"][request_id] == doc
        assert (kind, channel, outcome) == (doc["kind"], doc["channel"], doc["outcome"])
        assert received_at == utc(doc["received_at"]) and deadline == utc(doc["deadline"])
        assert months == (doc["extension"] or {}).get("months")
        assert completed == (utc(doc["completed_at"]) if doc["completed_at"] else None)


def test_refusals_at_the_command_and_in_the_processors(desk: Desk) -> None:
    old = received(OVERDUE, w.ago(days=40), "access")
    fresh = desk.json("requests", "open", ACCESS, "--kind", "erasure", "--channel", "phone")
    w.publish(desk.broker, desk.keystore, [old])
    applied(desk)
    rid, old_id = fresh["request_id"], old["data"]["request_id"]

    desk.refused("too late to extend", "requests", "extend", old_id, "--months", "1",
                 "--reason", "late")
    desk.refused("an extension is 1 to 2 month(s)", "requests", "extend", rid, "--months", "3",
                 "--reason", "complex")
    desk.refused("no such request", "requests", "extend", str(uuid.uuid4()), "--months", "1",
                 "--reason", "x")
    desk.refused("not a UUID", "requests", "show", "REQ-42")
    desk.refused("--months 'two'", "requests", "extend", rid, "--months", "two", "--reason", "x")
    desk.refused("--outcome 'done'", "requests", "complete", rid, "--outcome", "done")
    desk.refused("--kind 'deletion'", "requests", "open", ACCESS, "--kind", "deletion",
                 "--channel", "post")
    desk.refused("status 'late'", "requests", "list", "--status", "late")
    desk.refused("later than now", "requests", "open", ACCESS, "--kind", "access", "--channel",
                 "post", "--received-at", "2999-01-01T00:00:00Z")
    desk.json("requests", "extend", rid, "--months", "1", "--reason", "volume")
    applied(desk)
    desk.refused("already extended once", "requests", "extend", rid, "--months", "1",
                 "--reason", "again")

    # published anyway, past the command's check: the processors dead-letter them, saying why
    late_extension = w.event("RequestExtended", OVERDUE, w.ago(), {
        "request_id": old_id, "months": 2, "reason": "too late"}, source="registre-compliance")
    stray = w.event("RequestCompleted", ERASED, w.ago(), {
        "request_id": rid, "outcome": "fulfilled"}, source="registre-compliance")
    before = desk.rows()
    w.publish(desk.broker, desk.keystore, [late_extension, stray])
    applied(desk)
    dead = w.query(desk.database_url, "SELECT event_type, reason FROM projections.dead_letters"
                   " ORDER BY event_type")
    assert [t for t, _ in dead] == ["RequestCompleted", "RequestExtended"]
    assert f"no request {rid} was received for this subject" in dead[0][1]
    assert "too late to extend" in dead[1][1] and "first deadline" in dead[1][1]
    assert desk.rows() == before
    overdue = desk.json("requests", "list", "--overdue")["requests"]
    assert [(r["request_id"], r["extension"]) for r in overdue] == [(old_id, None)]
    check_the_desk_in_process(desk, rid)


def check_the_desk_in_process(desk: Desk, rid: str) -> None:
    """What a web route calls: the same documents, and errors it can tell apart."""
    from events.validation import InvalidEvent
    from processors.rules.requests import RequestRefused
    from registre.bootstrap import Registre
    from registre.services.audit import BadQuestion
    from registre.services.compliance import Compliance
    from registre.services.requests import UnknownRequest
    from registre.settings import Settings

    compliance = Compliance(Registre(Settings.from_env(desk.env)), "route-test")
    listed = compliance.requests()
    assert listed["requests"] == desk.json("requests", "list")["requests"]
    assert compliance.request(rid) == desk.json("requests", "show", rid)
    for call, error in [
        (lambda: compliance.extend_request(rid, "2", "why"), BadQuestion),  # type: ignore[arg-type]
        (lambda: compliance.extend_request(rid, 1, "why"), RequestRefused),
        (lambda: compliance.complete_request(rid, "done"), InvalidEvent),
        (lambda: compliance.complete_request(str(uuid.uuid4()), "refused"), UnknownRequest),
        (lambda: compliance.open_request(ACCESS, "access", "fax"), InvalidEvent),
        (lambda: compliance.requests("late"), BadQuestion),
        (lambda: compliance.requests(subject="someone@example.org"), BadQuestion),
    ]:
        with pytest.raises(error):
            call()


def test_completed_erasure_and_access_requests_show_their_matching_erasure_or_export(
        desk: Desk, tmp_path: Path) -> None:
    account = w.event("AccountCreated", ACCESS, w.ago(days=30), w.DELETED_ACCOUNT)
    erasure_first = received(ERASED, w.ago(days=2), "erasure")
    erasure = w.event("ErasureRequested", ERASED, w.ago(days=1), {"requested_by": "subject"})
    no_erasure = received(LATE, w.ago(days=2), "erasure")
    access = received(ACCESS, w.ago(days=2), "access")
    w.publish(desk.broker, desk.keystore, [account, erasure_first, erasure, no_erasure, access])
    applied(desk)
    # an export made for the request, recorded in the access log
    exported = desk.run("export", ACCESS, "--case", "DSR-7", "--reader", "dpo",
                        "--output", str(tmp_path / "export.json"))
    assert exported.returncode == 0, exported.stderr

    def complete(request: dict, outcome: str = "fulfilled") -> dict:
        return desk.json("requests", "complete", request["data"]["request_id"], "--outcome",
                         outcome)

    erased = complete(erasure_first)
    assert erased["expects"] == "ErasureRequested" and erased["problem"] is None
    assert erased["matching"] == {"type": "ErasureRequested", "event_id": erasure["event_id"],
                                  "at": format_instant(utc(erasure["occurred_at"]))}
    missing = complete(no_erasure)
    assert missing["matching"] is None
    assert "has no ErasureRequested at or before" in missing["problem"]
    answered = complete(access)
    [(access_id, reader, case)] = w.query(
        desk.database_url, "SELECT id, reader, case_ref FROM projections.access_log"
        " WHERE subject_id = %s AND what LIKE 'export%%'", (ACCESS,))
    assert answered["matching"]["type"] == "export"
    assert (answered["matching"]["access_id"], answered["matching"]["reader"],
            answered["matching"]["case_ref"]) == (access_id, "dpo", "DSR-7")
    applied(desk)

    done = {r["subject_id"]: r for r in desk.json("requests", "list", "--status",
                                                  "done")["requests"]}
    assert done[ERASED]["matching"] == erased["matching"]
    assert done[LATE]["matching"] is None and done[LATE]["problem"] == missing["problem"]
    assert done[ACCESS]["matching"] == answered["matching"]
    text = desk.run("requests", "show", no_erasure["data"]["request_id"])
    assert text.returncode == 0 and "problem: completed as fulfilled" in text.stdout
    listing = desk.run("requests", "list", "--subject", LATE)
    assert "PROBLEM" in listing.stdout and ERASED not in listing.stdout


def test_rebuild_gives_the_same_requests(desk: Desk) -> None:
    rid = str(uuid.uuid4())
    events = [received(OVERDUE, w.ago(days=50), "portability", rid),
              w.event("RequestExtended", OVERDUE, w.ago(days=45),
                      {"request_id": rid, "months": 1, "reason": "volume"},
                      source="registre-compliance"),
              received(ERASED, w.ago(days=5), "erasure"),
              w.event("ErasureRequested", ERASED, w.ago(days=4), {"requested_by": "subject"}),
              w.event("RequestExtended", ERASED, w.ago(days=1),  # unknown: dead-lettered
                      {"request_id": rid, "months": 1, "reason": "wrong subject"},
                      source="registre-compliance"),
              received(RECTIFY, w.ago(days=1), "rectification")]
    w.publish(desk.broker, desk.keystore, events)
    applied(desk)
    desk.json("requests", "complete", rid, "--outcome", "partially_fulfilled", "--reason",
              "quotes are no longer held")
    applied(desk)
    live = (desk.rows(), w.snapshot(desk.database_url),
            w.query(desk.database_url, "SELECT * FROM projections.erasure_requests ORDER BY 1"))
    assert len(live[0]) == 3 and len(live[1]["dead_letters"]) == 1 and len(live[2]) == 1

    done = desk.run("rebuild")
    assert done.returncode == 0, done.stderr
    again = (desk.rows(), w.snapshot(desk.database_url),
             w.query(desk.database_url, "SELECT * FROM projections.erasure_requests ORDER BY 1"))
    assert again[0] == live[0] and again[2] == live[2]
    assert again[1]["views"] == live[1]["views"]
    assert [d[:4] for d in again[1]["dead_letters"]] == [d[:4] for d in live[1]["dead_letters"]]
    with psycopg.connect(desk.database_url) as conn:
        deadline = conn.execute("SELECT deadline FROM projections.requests WHERE request_id = %s",
                                (rid,)).fetchone()[0]
    assert deadline == add_months(utc(events[0]["occurred_at"]), 2)  # extended in time
    shown = desk.json("requests", "show", rid)
    assert (shown["status"], shown["late"], shown["outcome"]) == (
        "done", False, "partially_fulfilled")

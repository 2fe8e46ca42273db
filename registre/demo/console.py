"""The demo's last chapter: data-subject requests, and the compliance console to see it all in.

A person writes "I am <email>, what do you hold on me?": the email finds the subject in the
keyed index, an access request is recorded with its deadline, the export answers it and the
request is completed with that export as its proof; an objection that arrived forty days ago
and was never answered shows as overdue. Then a console login is made (its password generated
and printed once), the demo logs in through the web service itself to prove it works, and
prints where to look.
"""

from __future__ import annotations

import http.cookiejar
import re
import secrets
import time
import urllib.parse
import urllib.request
from datetime import timedelta

from registre.demo.stage import Demo, by_subject, types
from registre.errors import UserError
from registre.services import staff

OFFICER = "demo-officer"
CASE = "DSR-DEMO-1"


def _active(demo: Demo) -> list[str]:
    """The demo's account holders still active, those with a flagged disclosure first."""
    people = by_subject(demo.events)
    flagged = [s for s, evs in people.items() if {"SharingRevoked", "DataShared"} <= types(evs)]
    return [s for s in dict.fromkeys([*flagged, *people])
            if "AccountCreated" in types(people[s])
            and demo.desk.summary(s)["status"] == "active"][:2]


def _email(demo: Demo, subject: str) -> str:
    return next(e["data"]["email"] for e in demo.events
                if e["subject_id"] == subject and e["type"] == "AccountCreated")


def requests(demo: Demo) -> str:
    """An access request from receipt to a provable answer; an overdue objection. The email
    of the person who wrote."""
    subject, other = _active(demo)
    email = _email(demo, subject)
    found = demo.desk.lookup(email=email)["subjects"]
    demo.say(f"a person writes in: \"I am {email}, what do you hold on me?\"; the keyed index"
             f" finds {', '.join(found)}")
    opened = demo.desk.open_request(subject, "access", "email", identity_verified=True)
    demo.say(f"access request {opened['request_id'][:8]} recorded, due {opened['deadline']}")
    late = demo.desk.open_request(other, "objection", "post", received_at=demo.registre.clock()
                                  - timedelta(days=40))
    demo.wait()
    demo.desk.export(subject, CASE)
    done = demo.desk.complete_request(opened["request_id"], "fulfilled")
    demo.wait()
    demo.show(f"requests show {opened['request_id']}",
              {k: done[k] for k in ("status", "received_at", "deadline", "completed_at",
                                    "outcome", "matching", "problem")})
    listed = demo.desk.requests()
    demo.say(f"requests: {listed['counts']['open']} open, {listed['counts']['overdue']} overdue"
             f" (the objection {late['request_id'][:8]} to {other}, received 40 days ago),"
             f" {listed['counts']['done']} done")
    return email


def _answers(url: str, seconds: float = 30.0) -> bool:
    """Whether the web service answers /healthz within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            time.sleep(0.2)
    return False


def _login(url: str, password: str) -> bool:
    """Log in to the console as the demo's officer, through the web service: it answers."""
    if not _answers(url):
        return False
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{url}/console/login", timeout=30) as page:
        token = re.search(r'name="csrf" value="([^"]+)"', page.read().decode())
    if token is None:
        return False
    form = urllib.parse.urlencode({"username": OFFICER, "password": password,
                                   "csrf": token.group(1), "next": "/console/requests"})
    with opener.open(f"{url}/console/login", data=form.encode(), timeout=30) as page:
        return page.url.endswith("/console/requests") and "Signed in as" in page.read().decode()


def console(demo: Demo, email: str, serve: bool) -> None:
    """A console login, checked by logging in, and where to look."""
    password = secrets.token_urlsafe(12)
    with demo.registre.connect("admin") as conn:
        staff.add(conn, OFFICER, "compliance", password, demo.registre.clock())
    if not _login(demo.http, password):
        raise UserError(f"the console at {demo.http} refused the demo's login; see"
                        f" {demo.home / 'web.log'}")
    demo.say("the compliance console answers, and the demo's officer logged in to it")
    print(f"\n--- the compliance console\n{demo.http}/console/\n"
          f"log in as {OFFICER} with the password {password} (shown once)\n"
          f"then search {email}, open the subject under a case reference (e.g. {CASE}) to"
          f" read its story, or see the requests page\n", flush=True)
    if not serve:
        demo.say("this run stops now: `registre demo --serve` keeps everything up until Ctrl-C")

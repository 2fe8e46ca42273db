"""The data-subject requests API and the compliance console, against a real stack: a real
`registre serve` process, a real processor worker, broker and PostgreSQL. The web service
connects as real compliance and publisher logins and `registre staff` as a real admin login,
so the grants of migration 014 are what is tested.

First through real HTTP (httpx): the requests routes (scopes, 422/404/409, the CLI's
documents), the console's redirects, cookies, CSRF refusals, sessions and login throttle. Then
in a real browser (Playwright driving Debian's Chromium): the walk-through of issue 14, from
"I am jeanne@example.fr" to a completed, provable answer. Screenshots of the main pages go to
``$REGISTRE_SCREENSHOTS`` when set (the README's come from there), else to a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import workers as w

from events.crypto import new_data_key
from processors.rules.timeutil import add_months
from projections.roles import ensure_login
from registre.services import staff
from tests.integration.web import Client, Server, registre, token

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"
JEANNE, OTHER = "acc-c00001", "acc-c00002"
PARTNER, SUPPORT = "voyages-canari.example", "support-canari.example"
JEANNE_ACCOUNT = {"gender": "female", "last_name": "Dupré-Canari", "first_name": "Jeanne",
                  "email": "jeanne@example.fr", "phone": "+33 6 11 22 33 44",
                  "postal_address": {"line1": "12 rue des Mésanges-Bleues",
                                     "postal_code": "35000", "city": "Rennes-Canari",
                                     "country": "FR"},
                  "over_15": True, "notice_version": "2026-02"}
CHROMIUM = os.environ.get("REGISTRE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--lang=en-GB"]


def jeanne_events() -> list[dict]:
    consent = {"notice_version": "2026-02"}
    return [
        w.event("AccountCreated", JEANNE, w.ago(20), JEANNE_ACCOUNT, "website-accounts"),
        w.event("ConsentGiven", JEANNE, w.ago(19), {"purposes": ["marketing", "optimisation"],
                                                    "mechanism": "banner_ok", **consent},
                "website-consent"),
        w.event("ConnectionRecorded", JEANNE, w.ago(12), {
            "ip": "203.0.113.58", "user_agent": "Mozilla/5.0 (X11) MesangeBrowser/3.1",
            "location": {"latitude": 48.11734, "longitude": -1.67788,
                         "city": "Rennes-Mésange", "country": "FR"}}, "website-auth"),
        w.event("SharingAuthorised", JEANNE, w.ago(11), {
            "recipient": PARTNER, "categories": ["identity", "contact"],
            "purpose": "service"}, "website-partners"),
        w.event("DataShared", JEANNE, w.ago(10), {
            "recipient": SUPPORT, "recipient_kind": "processor", "service": "assistance",
            "categories": ["contact"], "country": "FR", "basis": "processor_contract"},
            "website-support"),
        w.event("SharingRevoked", JEANNE, w.ago(9), {"recipient": PARTNER}, "website-partners"),
        w.event("DataShared", JEANNE, w.ago(8), {
            "recipient": PARTNER, "recipient_kind": "third_party", "service": "other",
            "categories": ["contact"], "country": "FR", "basis": "authorisation"},
            "website-partners"),
        w.event("ConsentWithdrawn", JEANNE, w.ago(5), {"purposes": ["marketing"],
                                                       "mechanism": "settings_page"},
                "website-consent"),
        w.event("AccountCreated", OTHER, w.ago(15), {
            **JEANNE_ACCOUNT, "first_name": "Octave", "email": "octave@example.fr",
            "phone": None}, "website-accounts"),
        w.event("ConnectionRecorded", OTHER, w.ago(14), {
            "ip": "198.51.100.77", "location": {"latitude": 47.2184, "longitude": -1.5536,
                                                "city": "Nantes-Canari", "country": "FR"}},
                "website-auth"),
    ]


@dataclass
class Stack:
    kafka: str
    database_url: str
    env: dict[str, str]
    home: Path
    worker: w.Worker
    server: Server
    publisher: Client
    dpo: Client
    shots: Path
    published: list[dict] = field(default_factory=list)

    def wait(self) -> None:
        w.wait_applied(self.kafka, self.database_url, workers=[self.worker])

    def cli(self, *args: str) -> Any:
        done = registre(self.env, *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def publish(self, events: list[dict]) -> None:
        answer = self.publisher.post("/v1/events", {"events": events})
        assert answer.status_code == 200 and answer.json()["rejected"] == [], answer.text
        self.published += events

    def add_staff(self, name: str, role: str = "compliance", password: str = PASSWORD,
                  cli: bool = False) -> None:
        """Through `registre staff add` (``cli``), or the same service in this process."""
        if cli:
            done = registre(self.env, "staff", "add", name, "--role", role, "--password-stdin",
                            stdin=password + "\n")
            assert done.returncode == 0, done.stderr
            return
        with psycopg.connect(self.env["REGISTRE_DATABASE_URL_ADMIN"], autocommit=True) as conn:
            staff.add(conn, name, role, password, datetime.now(UTC))


def role_logins(database_url: str) -> dict[str, str]:
    """Real logins of the compliance, publisher and admin groups (cluster-wide, idempotent)."""
    urls = {}
    for role in ("compliance", "publisher", "admin"):
        urls[f"REGISTRE_DATABASE_URL_{role.upper()}"] = ensure_login(
            database_url, f"registre_{role}", f"console_test_{role}",
            password=secrets.token_urlsafe(18))
    return urls


@pytest.fixture(scope="module")
def stack(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("console")
    brokers = w.broker_at(root / "broker")
    kafka = next(brokers)
    database_url = w.new_database(pg_server)
    master = new_data_key()
    home = root / "home"
    env = {**w.client_env(kafka, database_url, master, home), **role_logins(database_url)}
    worker = w.Worker(kafka, database_url, master, home)
    server = Server(env, home)
    clients = [Client(server.url, token(env, name, scope))
               for name, scope in (("website", "publish"), ("dpo-script", "compliance"))]
    shots = Path(os.environ.get("REGISTRE_SCREENSHOTS") or root / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        made = Stack(kafka, database_url, env, home, worker, server, *clients, shots)
        made.add_staff("officer", cli=True)
        made.publish(jeanne_events())
        made.wait()
        yield made
    finally:
        for client in clients:
            client.close()
        server.stop()
        worker.stop()
        brokers.close()


def is_error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    return body["error"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the requests API ---------------------------------------------------------------------------


def test_requests_api_from_receipt_to_answer_with_the_clis_documents(stack: Stack) -> None:
    opened = stack.dpo.post("/v1/requests", {"subject_id": JEANNE, "kind": "rectification",
                                             "channel": "post", "identity_verified": True})
    assert opened.status_code == 200, opened.text
    doc = opened.json()
    assert doc["published"] == "RequestReceived" and doc["status"] == "open"
    assert utc(doc["deadline"]) == add_months(utc(doc["received_at"]), 1)
    rid = doc["request_id"]
    stack.wait()
    shown = stack.dpo.get(f"/v1/requests/{rid}").json()
    assert shown == stack.cli("requests", "show", rid)
    extended = stack.dpo.post(f"/v1/requests/{rid}/extend", {"months": 2,
                                                             "reason": "many archives"})
    assert extended.status_code == 200, extended.text
    assert utc(extended.json()["deadline"]) == add_months(utc(doc["received_at"]), 3)
    stack.wait()
    assert "already extended" in is_error(stack.dpo.post(
        f"/v1/requests/{rid}/extend", {"months": 1, "reason": "again"}), 409)
    done = stack.dpo.post(f"/v1/requests/{rid}/complete", {"outcome": "fulfilled"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    stack.wait()
    assert "already completed" in is_error(stack.dpo.post(
        f"/v1/requests/{rid}/complete", {"outcome": "refused", "reason": "late"}), 409)
    listed = stack.dpo.get("/v1/requests", status="done", subject=JEANNE).json()
    cli = stack.cli("requests", "list", "--status", "done", "--subject", JEANNE)
    assert {k: v for k, v in listed.items() if k != "now"} == \
        {k: v for k, v in cli.items() if k != "now"}
    assert [r["request_id"] for r in listed["requests"]] == [rid]


def test_requests_api_scopes_and_errors(stack: Stack) -> None:
    body = {"subject_id": OTHER, "kind": "objection", "channel": "email"}
    anonymous = Client(stack.server.url, None)
    try:
        is_error(anonymous.get("/v1/requests"), 401)
        is_error(anonymous.post("/v1/requests", body), 401)
    finally:
        anonymous.close()
    is_error(stack.publisher.get("/v1/requests"), 403)
    is_error(stack.publisher.post("/v1/requests", body), 403)
    assert is_error(stack.dpo.post("/v1/requests", {**body, "kind": "whim"}), 422) \
        .startswith("data.kind:")
    is_error(stack.dpo.post("/v1/requests", {**body, "who": "me"}), 422)
    error = is_error(stack.dpo.post("/v1/requests", {**body, "subject_id": "jeanne@example.fr"}),
                     422)
    assert "jeanne" not in error
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert "later than now" in is_error(stack.dpo.post("/v1/requests", {
        **body, "received_at": later}), 422)
    is_error(stack.dpo.get("/v1/requests", status="late"), 422)
    is_error(stack.dpo.post(f"/v1/requests/{uuid.uuid4()}/extend", {"months": 1,
                                                                     "reason": "x"}), 404)
    is_error(stack.dpo.post(f"/v1/requests/{uuid.uuid4()}/complete",
                            {"outcome": "fulfilled"}), 404)
    is_error(stack.dpo.get(f"/v1/requests/{uuid.uuid4()}"), 404)
    is_error(stack.dpo.post("/v1/requests/not-a-uuid/complete", {"outcome": "fulfilled"}), 422)
    is_error(stack.dpo.post(f"/v1/requests/{uuid.uuid4()}/extend", {"months": 0,
                                                                     "reason": "x"}), 422)
    old = stack.dpo.post("/v1/requests", {**body, "received_at": w.ago(40)}).json()
    stack.wait()
    assert "too late" in is_error(stack.dpo.post(
        f"/v1/requests/{old['request_id']}/extend", {"months": 1, "reason": "x"}), 409)
    overdue = stack.dpo.get("/v1/requests", status="overdue").json()
    assert old["request_id"] in [r["request_id"] for r in overdue["requests"]]
    assert overdue["counts"]["overdue"] >= 1


# --- the console through HTTP ---------------------------------------------------------------


class Browser:
    """A cookie-keeping HTTP client of the console (no redirect followed)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60, follow_redirects=False)

    def form_token(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    def login(self, name: str = "officer", password: str = PASSWORD, next_url: str = "",
              **headers: str) -> httpx.Response:
        csrf = self.form_token("/console/login")
        return self.http.post("/console/login", data={
            "username": name, "password": password, "csrf": csrf, "next": next_url},
            headers=headers)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    made = Browser(stack.server.url)
    yield made
    made.close()


def test_a_visitor_who_is_not_logged_in_is_sent_to_the_login_page(browser: Browser) -> None:
    for path in ("/console/requests", "/console/", f"/console/subjects/{JEANNE}?case=DSR-1",
                 "/console/search?q=jeanne%40example.fr"):
        answer = browser.http.get(path)
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith("/console/login?next=")
        assert unquote(location.split("next=", 1)[1]) == path
    posted = browser.http.post(f"/console/subjects/{JEANNE}/erasure",
                               data={"requested_by": "subject", "confirm": "yes"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/console/login")
    assert browser.http.get("/console/static/console.css").status_code == 200
    missing = browser.http.get("/console/no-such-page")
    assert missing.status_code == 404 and "no such page" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    page = browser.http.get("/console/login")
    assert page.status_code == 200
    assert 'for="username"' in page.text and 'for="password"' in page.text


def test_cookies_sessions_and_csrf(stack: Stack, browser: Browser) -> None:
    login_page = browser.http.get("/console/login")
    pre = login_page.headers["set-cookie"]
    assert "registre_login=" in pre and "HttpOnly" in pre and "SameSite=strict" in pre
    assert "Path=/console/login" in pre
    bad = browser.http.post("/console/login", data={"username": "officer",
                                                    "password": PASSWORD, "csrf": "forged"})
    assert bad.status_code == 403 and "registre_session" not in bad.headers.get("set-cookie", "")
    wrong = browser.login(password="not the password at all")
    nobody = browser.login(name="nobody-at-all")
    assert wrong.status_code == nobody.status_code == 403
    assert "Wrong name or password." in wrong.text and "Wrong name or password." in nobody.text
    answer = browser.login(next_url="/console/requests")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/requests"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("registre_session=") and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Path=/console" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie
    session = browser.http.cookies["registre_session"]
    dump = repr(w.query(stack.database_url, "SELECT * FROM credentials.sessions"))
    assert session not in dump
    page = browser.http.get("/console/requests")
    assert page.status_code == 200 and "Signed in as <strong>officer</strong>" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    twin = browser.http.get("/console/requests", params={"format": "json"}).json()
    api = stack.dpo.get("/v1/requests").json()
    assert {k: v for k, v in twin.items() if k != "now"} == \
        {k: v for k, v in api.items() if k != "now"}
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    action = f"/console/subjects/{OTHER}/holds"
    hold = {"hold_case": "LIT-CSRF", "reason": "dispute"}
    forged = ("y" if csrf[0] == "x" else "x") + csrf[1:]  # never the token itself
    for data, headers in (({**hold}, {}), ({**hold, "csrf": forged}, {}),
                          ({**hold, "csrf": csrf}, {"Origin": "https://evil.example"})):
        refused = browser.http.post(action, data=data, headers=headers)
        assert refused.status_code == 403 and "did not come from your console" in refused.text
    assert "LIT-CSRF" not in json.dumps(stack.cli("view", OTHER))
    logout = browser.http.post("/console/logout", data={"csrf": csrf})
    assert logout.status_code == 303 and logout.headers["location"] == "/console/login"
    assert 'registre_session=""' in logout.headers["set-cookie"]
    assert w.query(stack.database_url, "SELECT count(*) FROM credentials.sessions")[0][0] == 0
    browser.http.cookies.set("registre_session", session, path="/console")
    assert browser.http.get("/console/requests").status_code == 303  # the session is gone


def test_secure_cookie_over_https_removal_ends_sessions_and_roles(stack: Stack,
                                                                  browser: Browser) -> None:
    stack.add_staff("temp-officer")
    behind_proxy = browser.login("temp-officer", **{"X-Forwarded-Proto": "https"})
    assert behind_proxy.status_code == 303 and "Secure" in behind_proxy.headers["set-cookie"]
    browser.http.cookies.clear()
    assert browser.login("temp-officer").status_code == 303
    assert browser.http.get("/console/schedule").status_code == 200
    listed = stack.cli("staff", "list")
    assert {"temp-officer", "officer"} <= {p["name"] for p in listed}
    assert all("hash" not in p for p in listed)
    hashes = w.query(stack.database_url, "SELECT hash FROM credentials.staff")
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for (h,) in hashes)
    assert stack.cli("staff", "remove", "temp-officer")["removed"] == "temp-officer"
    assert browser.http.get("/console/schedule").status_code == 303
    taken = registre(stack.env, "staff", "add", "dpo-script", "--role", "compliance",
                     "--password-stdin", stdin=PASSWORD + "\n")
    assert taken.returncode == 1 and "token has that name" in taken.stderr
    stack.add_staff("ops-admin", role="admin")
    browser.http.cookies.clear()
    assert browser.login("ops-admin").status_code == 303
    refused = browser.http.get("/console/requests")
    assert refused.status_code == 403 and "does not open the compliance pages" in refused.text
    assert "Log out" in refused.text and 'href="/console/requests"' not in refused.text


def test_failed_logins_are_throttled_per_name(stack: Stack, browser: Browser) -> None:
    stack.add_staff("guessed")
    for _ in range(5):
        assert browser.login("guessed", "wrong guess number n").status_code == 403
    blocked = browser.login("guessed")  # the right password, too late
    assert blocked.status_code == 429 and "Too many failed attempts" in blocked.text
    assert browser.login().status_code == 303  # another name is not blocked


def test_an_idle_or_expired_session_ends(stack: Stack, browser: Browser) -> None:
    for change in ("last_seen_at = now() - interval '31 minutes'", "expires_at = now()"):
        assert browser.login().status_code == 303
        assert browser.http.get("/console/schedule").status_code == 200
        mine = hashlib.sha256(browser.http.cookies["registre_session"].encode()).digest()
        w.query(stack.database_url, f"UPDATE credentials.sessions SET {change} WHERE id_hash = %s"
                " RETURNING 1", (mine,))
        answer = browser.http.get("/console/schedule")
        assert answer.status_code == 303, change
        assert answer.headers["location"] == "/console/login?next=%2Fconsole%2Fschedule"
        assert w.query(stack.database_url, "SELECT count(*) FROM credentials.sessions WHERE"
                       " id_hash = %s", (mine,))[0][0] == 0  # an ended session is deleted


def test_reads_are_recorded_under_the_staff_name_and_the_case(stack: Stack,
                                                              browser: Browser) -> None:
    assert browser.login().status_code == 303

    def accesses() -> list[tuple]:
        return w.query(stack.database_url, "SELECT reader, case_ref, what FROM"
                       " projections.access_log WHERE subject_id = %s ORDER BY id", (OTHER,))

    before = accesses()
    plain = browser.http.get(f"/console/subjects/{OTHER}")
    assert plain.status_code == 200 and "Octave" not in plain.text
    assert "Open a case to see personal data" in plain.text and accesses() == before
    read = browser.http.get(f"/console/subjects/{OTHER}",
                            params={"case": "CASE-RD-1", "reader": "mallory"})
    assert read.status_code == 200 and "Octave" in read.text
    new = accesses()[len(before):]
    assert {(r, c) for r, c, _ in new} == {("officer", "CASE-RD-1")}
    assert [what.split(" 20")[0] for _, _, what in new] == ["customer view", "timeline"]
    count = len(accesses())
    for path in (f"/console/subjects/{OTHER}", f"/console/subjects/{OTHER}/export"):
        elsewhere = browser.http.get(path, params={"case": "CASE-X"},
                                     headers={"Sec-Fetch-Site": "cross-site"})
        assert elsewhere.status_code == 200 and "Octave" not in elsewhere.text
        assert "A link from another site asks for this read" in elsewhere.text
        assert f'href="{path}?case=CASE-X"' in elsewhere.text
    assert len(accesses()) == count
    assert browser.http.get("/console/subjects/jeanne@example.fr").status_code == 422
    assert "jeanne" not in browser.http.get("/console/subjects/jeanne@example.fr").text
    assert browser.http.get("/console/subjects/acc-nobody").status_code == 404


# --- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def page(chromium: Any, stack: Stack) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1366, "height": 768}, locale="en-GB",
                                   timezone_id="Europe/Paris", accept_downloads=True)
    context.set_default_timeout(30_000)
    made = context.new_page()
    yield made
    context.close()


def shoot(stack: Stack, page: Any, name: str, full: bool = True, height: int = 0) -> None:
    """A PNG of the page (the whole page, or its first ``height`` pixels, or the viewport)."""
    clip = {"x": 0, "y": 0, "width": 1366, "height": height} if height else None
    page.screenshot(path=str(stack.shots / f"{name}.png"), full_page=full or bool(height),
                    clip=clip)


def nav(page: Any, action: Any) -> None:
    """Do what makes the page navigate (a click, Enter in a field) and wait for the new page."""
    with page.expect_navigation():
        action()


def reload_until(page: Any, text: str, timeout: float = 30.0) -> None:
    """Reload until ``text`` shows (what the processors append arrives a moment later)."""
    deadline = time.monotonic() + timeout
    while text not in page.content():
        assert time.monotonic() < deadline, f"{text!r} never showed"
        time.sleep(0.3)
        page.reload()


def test_browser_1_a_logged_out_visitor_logs_in_and_finds_jeanne_by_email(
        stack: Stack, page: Any) -> None:
    page.goto(stack.server.url + "/console/requests")
    assert page.url.startswith(stack.server.url + "/console/login?next=")
    shoot(stack, page, "login", full=False)
    page.get_by_label("Name").fill("officer")
    page.get_by_label("Password").fill(PASSWORD)
    nav(page, page.get_by_role("button", name="Log in").click)
    assert page.url == stack.server.url + "/console/requests"
    nav(page, page.get_by_role("link", name="Search").click)
    page.get_by_label("Subject id, email address or phone number").fill("jeanne@example.fr")
    nav(page, lambda: page.keyboard.press("Enter"))
    assert page.get_by_role("heading", name="1 result by email").is_visible()
    shoot(stack, page, "search", full=False)
    nav(page, page.get_by_role("link", name=JEANNE).click)
    assert "Open a case to see personal data" in page.content()
    shoot(stack, page, "subject-no-case", height=1100)
    assert "Jeanne" not in page.content()


def test_browser_2_the_case_shows_the_decrypted_timeline_and_the_flagged_disclosure(
        stack: Stack, page: Any) -> None:
    page.get_by_label("Case reference").fill("DSR-2026-017")
    nav(page, page.get_by_role("button", name="Open the case").click)
    html = page.content()
    assert "Case <strong>DSR-2026-017</strong>" in html
    timeline = page.locator("#timeline")
    text = timeline.inner_text()
    assert "Account created by website-accounts" in text and "Jeanne" in text
    assert "jeanne@example.fr" in text and "203.0.113.58" in text
    assert "Consent to marketing withdrawn in the account settings" in text
    flagged = timeline.locator(".event-flagged")
    assert flagged.count() == 1
    assert f"Data shared with {PARTNER} (contact) on the basis of an authorisation" in \
        flagged.inner_text() and "unauthorised" in flagged.inner_text()
    rows = page.locator("#disclosures tr.row-flagged")
    assert rows.count() == 1 and "UNAUTHORISED" in rows.inner_text()
    assert page.locator("#disclosures tbody tr").count() == 2
    page.get_by_label("Consent to").select_option("marketing")
    page.get_by_label("at (Paris time)").fill(
        (datetime.now(UTC) - timedelta(days=7)).astimezone(ZoneInfo("Europe/Paris"))
        .strftime("%Y-%m-%d %H:%M"))
    nav(page, page.get_by_role("button", name="Ask").click)
    answer = page.locator("#consents .answer").inner_text()
    assert "granted" in answer and "Proof" in answer
    shoot(stack, page, "subject-case")
    readers = w.query(stack.database_url, "SELECT DISTINCT reader, case_ref FROM"
                      " projections.access_log WHERE subject_id = %s", (JEANNE,))
    assert readers == [("officer", "DSR-2026-017")]
    nav(page, lambda: page.goto(page.url.split("?")[0] + "?case=DSR-2026-017"))


def test_browser_3_place_and_release_a_hold(stack: Stack, page: Any) -> None:
    page.get_by_text("Place a legal hold").click()
    page.get_by_label("Case reference of the hold").fill("LIT-2026-B1")
    page.locator("#hold_reason").select_option("regulator")
    nav(page, page.get_by_role("button", name="Place the hold").click)
    assert "Legal hold LIT-2026-B1 placed" in page.locator("main > p.flash-ok").inner_text()
    assert "LIT-2026-B1" in page.locator("#holds tbody").inner_text()
    assert stack.cli("view", JEANNE)["holds"] == ["LIT-2026-B1"]
    nav(page, page.get_by_role("button", name="Release LIT-2026-B1").click)
    assert "released" in page.locator("main > p.flash-ok").inner_text()
    assert "No active hold" in page.locator("#holds tbody").inner_text()
    assert stack.cli("view", JEANNE)["holds"] == []


def record(page: Any, kind: str) -> str:
    page.get_by_text("Record a request received from this person").click()
    page.get_by_label("Right exercised").select_option(kind)
    page.get_by_label("Received", exact=True).select_option("email")
    page.get_by_label("The person's identity was verified").check()
    nav(page, page.get_by_role("button", name="Record the request").click)
    said = page.locator("main > p.flash-ok").inner_text()
    assert said.startswith(f"{kind.capitalize()} request "), said
    return said.split()[2]


def complete(page: Any, short: str, outcome: str = "fulfilled") -> str:
    row = page.locator("#requests tbody tr", has_text=short)
    row.get_by_text("Extend or complete").click()
    row.get_by_label("Outcome").select_option(outcome)
    nav(page, row.get_by_role("button", name="Complete the request").click)
    return page.locator("main > p.flash").inner_text()


def test_browser_4_jeanne_asks_what_is_held_and_to_delete_it(stack: Stack, page: Any) -> None:
    access, erasure = record(page, "access"), record(page, "erasure")
    requests = page.locator("#requests tbody").inner_text()
    assert access in requests and erasure in requests and "Open" in requests
    with page.expect_download() as downloaded:
        page.get_by_role("link", name="Download the export (JSON)").click()
    export = json.loads(Path(downloaded.value.path()).read_text())
    assert export["subject_id"] == JEANNE
    assert export["personal_data"]["identity"]["first_name"] == "Jeanne"
    said = complete(page, access)
    assert "completed: fulfilled" in said and "Answered by the export" in said, said
    page.get_by_text("Request erasure (right to erasure, art. 17)").click()
    page.get_by_label("I confirm").check()
    nav(page, page.get_by_role("button", name="Request erasure", exact=True).click)
    assert "Erasure requested for acc-c00001" in page.locator("main > p.flash-ok").inner_text()
    said = complete(page, erasure)
    assert "Answered by the ErasureRequested" in said and "PROBLEM" not in said, said
    page.goto(stack.server.url + "/console/requests?status=done")
    done = page.locator("table tbody").inner_text()
    assert access in done and erasure in done and "answered by the export" in done
    assert "answered by the ErasureRequested" in done
    page.goto(stack.server.url + "/console/requests")
    shoot(stack, page, "requests")


def test_browser_5_an_erased_subject_shows_no_personal_data(stack: Stack, page: Any) -> None:
    page.goto(f"{stack.server.url}/console/subjects/{JEANNE}?case=DSR-2026-017")
    reload_until(page, "Certificate")
    html = page.content()
    assert "badge-erased" in html and "destroyed on " in html
    values = {v for v in w.personal_values(jeanne_events()[:8]) if not v.isdigit()}
    leaked = sorted(v for v in values if v in html)
    assert leaked == []
    assert "No personal data is shown: the account was erased" in html
    shoot(stack, page, "subject-erased", height=1500)
    nav(page, page.get_by_role("link", name="Search").click)
    page.get_by_label("Subject id, email address or phone number").fill("jeanne@example.fr")
    nav(page, lambda: page.keyboard.press("Enter"))
    assert "Nobody found" in page.content()


def test_browser_6_schedule_integrity_and_logout(stack: Stack, page: Any) -> None:
    held = stack.dpo.post(f"/v1/subjects/{OTHER}/holds", {
        "case_ref": "LIT-2026-C9", "reason": "court_order", "categories": ["identity"]})
    assert held.status_code == 200, held.text
    stack.wait()
    nav(page, page.get_by_role("link", name="Schedule").click)
    assert page.get_by_role("heading", name="Retention schedule").is_visible()
    page.get_by_label("Destructions due in the next").fill("500")
    nav(page, page.get_by_role("button", name="Show").click)
    due = page.locator("#due + table tbody").inner_text()
    assert OTHER in due and "connection" in due and "location" in due
    assert "LIT-2026-C9" in page.locator("#holds + table tbody").inner_text()
    shoot(stack, page, "schedule", full=False)
    nav(page, page.get_by_role("link", name="Integrity").click)
    nav(page, page.get_by_role("button", name="Verify the whole log now").click)
    assert "The log is intact" in page.content()
    shoot(stack, page, "integrity", full=False)
    nav(page, page.get_by_role("button", name="Log out").click)
    assert page.url == stack.server.url + "/console/login"
    page.goto(f"{stack.server.url}/console/subjects/{JEANNE}")
    assert page.url.startswith(stack.server.url + "/console/login?next=")


def test_zz_no_personal_value_in_the_web_service_log(stack: Stack) -> None:
    """Last of the module: everything above went through this server."""
    log = stack.server.log()
    assert "route=/console/subjects/{subject}" in log and "token=officer" in log
    values = w.personal_values(stack.published) | {"jeanne@example.fr", PASSWORD}
    assert w.occurring(values, log) == []
    assert "Traceback" not in log and "unexpected error" not in log

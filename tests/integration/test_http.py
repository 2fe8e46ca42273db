"""The HTTP API through real HTTP: a real `registre serve` process, a real broker, a real
PostgreSQL and a real processor worker; tokens from the real `registre tokens create`.

Every answer of a question is compared with the CLI's `--json` for the same question; the
publishing errors with `registre publish`'s; the keyed lookup is checked to forget an erased
subject in the transaction that destroys its contact key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import workers as w
from psycopg import errors

from events.crypto import new_data_key
from projections.roles import ensure_analyst_login
from tests.integration.web import Client, Server, registre, token

pytestmark = pytest.mark.integration
EXAMPLES = w.ROOT / "schemas" / "examples"
CASE = "CASE-HTTP-1"


@dataclass
class Stack:
    kafka: str
    database_url: str
    env: dict[str, str]
    home: Path
    worker: w.Worker
    server: Server
    publisher: Client  # token "website": publish
    dpo: Client  # token "dpo-script": compliance
    admin: Client  # token "ops": admin
    published: list[dict]  # every event sent, for the log scan at the end

    def wait(self) -> None:
        w.wait_applied(self.kafka, self.database_url, workers=[self.worker])

    def cli(self, *args: str) -> dict | list:
        done = registre(self.env, *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def publish(self, events: list[dict]) -> dict:
        answer = self.publisher.post("/v1/events", {"events": events})
        assert answer.status_code == 200, answer.text
        self.published += events
        return answer.json()


@pytest.fixture(scope="module")
def stack(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("http")
    brokers = w.broker_at(root / "broker")
    kafka = next(brokers)
    database_url = w.new_database(pg_server)
    master = new_data_key()
    home = root / "home"
    env = w.client_env(kafka, database_url, master, home)
    worker = w.Worker(kafka, database_url, master, home)
    server = Server(env, home)
    clients = [Client(server.url, token(env, name, scope)) for name, scope in
               (("website", "publish"), ("dpo-script", "compliance"), ("ops", "admin"))]
    try:
        yield Stack(kafka, database_url, env, home, worker, server, *clients, published=[])
    finally:
        for client in clients:
            client.close()
        server.stop()
        worker.stop()
        brokers.close()


def account(subject: str, email: str, phone: str | None = None, at: str | None = None) -> dict:
    data = {"gender": "other", "last_name": "Pinsonneau", "first_name": "Eulalie",
            "email": email, "postal_address": {"line1": "3 quai des Pinsons-Canari",
                                               "postal_code": "44000", "city": "Nantes-Canari",
                                               "country": "FR"},
            "over_15": True, "notice_version": "2026-02"}
    if phone:
        data["phone"] = phone
    return w.event("AccountCreated", subject, at or w.ago(20), data)


def is_error(answer, status: int) -> str:  # noqa: ANN001
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    assert "Traceback" not in answer.text
    return body["error"]


# --- publishing ------------------------------------------------------------------------------


def test_publish_one_event_and_a_batch_then_applied(stack: Stack) -> None:
    one = account("acc-h00001", "eulalie.pinsonneau@exemple-canari.fr")
    answer = stack.publisher.post("/v1/events", one)
    assert answer.status_code == 200
    assert answer.json() == {"published": 1, "rejected": [], "redacted": []}
    stack.published.append(one)
    story = w.story()
    assert stack.publish(story) == {"published": len(story), "rejected": [], "redacted": []}
    stack.wait()
    for subject in ("acc-h00001", w.ACTIVE, w.DELETED):
        got = stack.dpo.get(f"/v1/subjects/{subject}", case=CASE)
        assert got.status_code == 200, got.text
        assert got.json() == stack.cli("view", subject)
    assert stack.dpo.get(f"/v1/subjects/{w.ACTIVE}", case=CASE).json()["identity"] == \
        w.IDENTITY


def _invalid_examples() -> list[dict]:
    cases = []
    for path in sorted(EXAMPLES.glob("*.invalid.jsonl"))[:6]:
        cases += [json.loads(line)["event"] for line in path.read_text().splitlines()[:2]]
    return cases


def test_rejected_items_are_named_by_index_with_the_errors_of_registre_publish(
        stack: Stack) -> None:
    good = w.event("ConsentGiven", "acc-h00002", w.ago(1), {
        "purposes": ["marketing"], "notice_version": "2026-02", "mechanism": "api"})
    items = [good, *_invalid_examples(), {"type": "Nope"}, 42]
    answer = stack.publisher.post("/v1/events", {"events": items}).json()
    assert answer["published"] == 1 and answer["redacted"] == []
    lines = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    done = registre(stack.env, "publish", "-", stdin=lines)
    assert done.returncode == 1
    cli = json.loads(done.stdout)["rejected"]
    assert [(r["index"], r["error"]) for r in answer["rejected"]] == \
        [(r["line"] - 1, r["error"]) for r in cli]
    assert len(answer["rejected"]) == len(items) - 1
    one = stack.publisher.post("/v1/events", items[1]).json()
    assert one == {"published": 0, "rejected": [{"index": 0, "error": cli[0]["error"]}],
                   "redacted": []}
    stack.published.append(good)


def test_credentials_scopes_limits_and_errors(stack: Stack) -> None:
    anonymous, wrong = Client(stack.server.url, None), Client(stack.server.url, "rgt_nope")
    try:
        answer = anonymous.get(f"/v1/subjects/{w.ACTIVE}", case=CASE)
        is_error(answer, 401)
        assert answer.headers["www-authenticate"] == "Bearer"
        is_error(anonymous.post("/v1/events", {"events": []}), 401)
        is_error(wrong.get("/v1/verify"), 401)
    finally:
        anonymous.close()
        wrong.close()
    is_error(stack.publisher.get(f"/v1/subjects/{w.ACTIVE}", case=CASE), 403)
    is_error(stack.publisher.get("/v1/lookup", email="a@b.fr"), 403)
    is_error(stack.dpo.post("/v1/events", {"events": [account("acc-h9", "x@y.fr")]}), 403)
    is_error(stack.admin.get("/v1/schedule"), 403)
    # 413: declared too large, and streamed (chunked, no Content-Length) past the limit
    big = b'{"events": [' + b" " * (9 << 20) + b"]}"
    assert "limit" in is_error(stack.publisher.post("/v1/events", content=big), 413)
    chunks = (b" " * (1 << 20) for _ in range(10))
    is_error(stack.publisher.post("/v1/events", content=chunks), 413)
    is_error(stack.dpo.post(f"/v1/subjects/{w.ACTIVE}/holds",
                            content=b'{"case_ref": "' + b"x" * (100 << 10) + b'"}'), 413)
    # 422: not what the route takes
    for body in (b"{not json", b"[1, 2]", b'{"events": []}', b'{"events": 3}',
                 b'{"events": [{}], "more": 1}'):
        is_error(stack.publisher.post("/v1/events", content=body), 422)
    is_error(stack.dpo.get(f"/v1/subjects/{w.ACTIVE}/consent", at=w.ago(1)), 422)
    assert "at:" in is_error(stack.dpo.get(f"/v1/subjects/{w.ACTIVE}/consent",
                                           purpose="marketing", at="yesterday"), 422)
    is_error(stack.dpo.post(f"/v1/subjects/{w.ACTIVE}/holds",
                            {"case_ref": "X", "reason": "dispute", "who": "me"}), 422)
    is_error(stack.dpo.get("/v1/lookup"), 422)
    is_error(stack.dpo.get("/v1/schedule", days=-1), 422)
    error = is_error(stack.dpo.get("/v1/subjects/203.0.113.77/erasure"), 422)
    assert "203.0.113" not in error and error.startswith("subject_id:")
    error = is_error(stack.dpo.get("/v1/lookup", email="not-an-address-canari"), 422)
    assert "canari" not in error
    # 404: an unknown subject, an unknown route
    is_error(stack.dpo.get("/v1/subjects/acc-nobody/erasure"), 404)
    is_error(stack.dpo.get("/v1/nothing"), 404)


# --- questions -------------------------------------------------------------------------------


def _without(doc: dict, *keys: str) -> dict:
    return {k: v for k, v in doc.items() if k not in keys}


def test_every_answer_is_the_cli_document(stack: Stack) -> None:
    at = w.ago(6)
    pairs = [
        (f"/v1/subjects/{w.ACTIVE}/consent", {"purpose": "personalised_ads", "at": at},
         ("audit", "consent", w.ACTIVE, "--purpose", "personalised_ads", "--at", at)),
        (f"/v1/subjects/{w.ACTIVE}/disclosures", {}, ("audit", "disclosures", w.ACTIVE)),
        (f"/v1/subjects/{w.DELETED}/erasure", {}, ("audit", "erasure", w.DELETED)),
        ("/v1/schedule", {"days": 400, "now": at},
         ("audit", "schedule", "--days", "400", "--now", at)),
        ("/v1/verify", {}, ("verify",)),
    ]
    for path, params, args in pairs:
        got = stack.dpo.get(path, **params)
        assert got.status_code == 200, got.text
        assert got.json() == stack.cli(*args), path
    as_of = stack.dpo.get(f"/v1/subjects/{w.ACTIVE}/as-of", at=at, case=CASE).json()
    cli = stack.cli("audit", "as-of", w.ACTIVE, "--at", at, "--case", CASE)
    assert _without(as_of, "access_id") == _without(cli, "access_id")
    assert as_of["view"]["identity"] == w.IDENTITY
    export = stack.dpo.get(f"/v1/subjects/{w.ACTIVE}/export", case=CASE).json()
    cli = stack.cli("export", w.ACTIVE, "--case", CASE)
    assert _without(export, "access_id", "generated_at") == \
        _without(cli, "access_id", "generated_at")


def _accesses(stack: Stack, subject: str) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in w.query(
        stack.database_url, "SELECT reader, case_ref, what FROM projections.access_log"
        " WHERE subject_id = %s ORDER BY id", (subject,))]


def test_decrypting_reads_need_a_case_and_are_logged_under_the_token_name(stack: Stack) -> None:
    subject = "acc-h00003"
    stack.publish([account(subject, "case.reads@exemple-canari.fr")])
    stack.wait()
    reads = {"": {}, "/timeline": {}, "/as-of": {"at": w.ago(0)}, "/export": {}}
    for suffix, params in reads.items():
        is_error(stack.dpo.get(f"/v1/subjects/{subject}{suffix}", **params), 422)
        is_error(stack.dpo.get(f"/v1/subjects/{subject}{suffix}", case="  ", **params), 422)
        # no text column stores U+0000 (schemathesis found a 500 here): named, one line
        bad = stack.dpo.get(f"/v1/subjects/{subject}{suffix}", case="CASE\x00-1", **params)
        assert "control characters" in is_error(bad, 422)
    assert _accesses(stack, subject) == []
    for suffix, params in reads.items():
        got = stack.dpo.http.get(f"/v1/subjects/{subject}{suffix}",
                                 params={**params, "case": CASE, "reader": "mallory"},
                                 headers={"X-Reader": "mallory"})
        assert got.status_code == 200, got.text
        logged = _accesses(stack, subject)
        assert logged[-1][:2] == ("dpo-script", CASE)  # the token's name, committed already
        if "access_id" in got.json():
            ids = [r[0] for r in w.query(stack.database_url, "SELECT id FROM "
                                         "projections.access_log WHERE subject_id = %s",
                                         (subject,))]
            assert got.json()["access_id"] in ids
    whats = [what.split(" 20")[0] for _, _, what in _accesses(stack, subject)]
    assert whats == ["customer view", "timeline", "as-of", "export (art. 15/20)"]


def _flat(value) -> list:  # noqa: ANN001
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flat(v)]
    if isinstance(value, list):
        return [x for v in value for x in _flat(v)]
    return [value]


def test_timeline_and_lookup_forget_an_erased_subject(stack: Stack) -> None:
    subject, email, phone = "acc-h00004", "Gaspard.Roitelet@Exemple-Canari.fr", "+33 6 12 34 56 78"
    events = [account(subject, email, phone),
              w.event("ConnectionRecorded", subject, w.ago(2), {"ip": "198.51.100.44"})]
    stack.publish(events)
    stack.wait()
    for query in ({"email": " gaspard.roitelet@exemple-canari.FR "}, {"phone": "+33612345678"},
                  {"phone": "+33 (6) 12.34.56.78"}):
        assert stack.dpo.get("/v1/lookup", **query).json() == {"subjects": [subject]}
    assert stack.cli("lookup", "--email", email) == {"subjects": [subject]}
    assert stack.dpo.get("/v1/lookup", phone="0612345678").json() == {"subjects": []}
    before = stack.dpo.get(f"/v1/subjects/{subject}/timeline", case=CASE).json()
    assert [e["type"] for e in before["events"]] == ["AccountCreated", "ConnectionRecorded"]
    assert before["events"][0]["data"]["email"] == email
    assert before["events"][1]["data"]["ip"] == "198.51.100.44"

    answer = stack.dpo.post(f"/v1/subjects/{subject}/erasure")
    assert answer.status_code == 200, answer.text
    assert answer.json()["published"] == "ErasureRequested"
    stack.wait()
    with psycopg.connect(stack.database_url) as conn, conn.transaction():  # one snapshot
        keys = conn.execute("SELECT category FROM keystore.data_keys WHERE subject_id = %s",
                            (subject,)).fetchall()
        rows = conn.execute("SELECT kind FROM projections.contact_lookup WHERE subject_id = %s",
                            (subject,)).fetchall()
        destroyed = conn.execute("SELECT destroyed_at FROM tombstones.destroyed_keys WHERE"
                                 " subject_id = %s AND category = 'contact'",
                                 (subject,)).fetchone()
    assert keys == [] and rows == [] and destroyed is not None
    assert stack.dpo.get("/v1/lookup", email=email).json() == {"subjects": []}
    assert stack.cli("lookup", "--phone", phone) == {"subjects": []}
    after = stack.dpo.get(f"/v1/subjects/{subject}/timeline", case=CASE).json()
    shown = after["events"][0]["data"]["email"]
    assert shown["destroyed"] is True and shown["category"] == "contact"
    assert shown["destroyed_at"].startswith(destroyed[0].strftime("%Y-%m-%dT%H:%M"))
    assert after["events"][1]["data"]["ip"]["destroyed"] is True
    text = json.dumps(after, ensure_ascii=False)
    for value in w.personal_values(events):
        assert value not in text
    assert [e["type"] for e in after["events"]][:3] == [
        "AccountCreated", "ConnectionRecorded", "ErasureRequested"]
    assert stack.dpo.get(f"/v1/subjects/{subject}/erasure").json()["status"] == "erased"


def test_holds_are_published_and_applied(stack: Stack) -> None:
    subject = "acc-h00005"
    stack.publish([account(subject, "tenue.juridique@exemple-canari.fr")])
    placed = stack.dpo.post(f"/v1/subjects/{subject}/holds",
                            {"case_ref": "LIT-H-1", "reason": "dispute",
                             "categories": ["identity"]})
    assert placed.status_code == 200, placed.text
    assert _without(placed.json(), "event_id") == {
        "published": "LegalHoldPlaced", "subject_id": subject, "case_ref": "LIT-H-1"}
    uuid.UUID(placed.json()["event_id"])
    stack.wait()
    assert stack.cli("view", subject)["holds"] == ["LIT-H-1"]
    error = is_error(stack.dpo.post(f"/v1/subjects/{subject}/holds",
                                    {"case_ref": "LIT-H-2", "reason": "whim"}), 422)
    assert error.startswith("data.reason:")
    released = stack.dpo.delete(f"/v1/subjects/{subject}/holds/LIT-H-1")
    assert released.status_code == 200 and released.json()["published"] == "LegalHoldReleased"
    stack.wait()
    assert stack.cli("view", subject)["holds"] == []
    assert stack.cli("audit", "erasure", subject)["holds"] == []


def test_tokens_are_stored_as_argon2_hashes_only(stack: Stack) -> None:
    fresh = token(stack.env, "short-lived", "compliance", "publish")
    secret = fresh.split("_", 2)[2]
    rows = w.query(stack.database_url, "SELECT * FROM credentials.tokens")
    assert {r[1] for r in rows} >= {"website", "dpo-script", "ops", "short-lived"}
    dump = repr(rows)
    assert fresh not in dump and secret not in dump
    assert all(r[2].startswith("$argon2id$") for r in rows)
    listed = registre(stack.env, "tokens", "list", "--json")
    assert listed.returncode == 0 and secret not in listed.stdout
    assert {t["name"] for t in json.loads(listed.stdout)} >= {"short-lived"}
    taken = registre(stack.env, "tokens", "create", "short-lived", "--scope", "publish")
    assert taken.returncode == 1 and len(taken.stderr.strip().splitlines()) == 1
    assert registre(stack.env, "tokens", "revoke", "short-lived").returncode == 0
    client = Client(stack.server.url, fresh)
    try:
        is_error(client.get("/v1/verify"), 401)
    finally:
        client.close()
    gone = registre(stack.env, "tokens", "revoke", "short-lived")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    analyst = ensure_analyst_login(stack.database_url, password="analyst-test-password")
    with psycopg.connect(analyst, autocommit=True) as conn:
        for table in ("credentials.tokens", "projections.contact_lookup"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM {table} LIMIT 1")


def _web_backends(stack: Stack) -> set[int]:
    """The backends of the web service's pooled connections (`registre.web.pools`)."""
    return {pid for (pid,) in w.query(
        stack.database_url, "SELECT pid FROM pg_stat_activity WHERE datname ="
        " current_database() AND application_name LIKE 'registre-web-%%'")}


def test_connections_are_kept_open_and_a_broken_one_is_replaced(stack: Stack) -> None:
    """Questions asked one after another reuse the web service's open connections (no new
    backend and login each time); once PostgreSQL has dropped them (a restart does), the next
    question is answered on a new connection, not failed."""
    subject = "acc-h00009"
    stack.publish([account(subject, "pooled.connections@exemple-canari.fr")])
    stack.wait()
    path, params = f"/v1/subjects/{subject}/consent", {"purpose": "marketing", "at": w.ago(0)}
    first = stack.dpo.get(path, **params)
    assert first.status_code == 200, first.text
    kept = _web_backends(stack)
    assert kept  # still open after the answer
    for _ in range(5):
        assert stack.dpo.get(path, **params).json() == first.json()
    assert _web_backends(stack) == kept
    w.query(stack.database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid = ANY(%s)", (list(kept),))
    w.wait_until(lambda: not _web_backends(stack) & kept, timeout=10)  # the backends went
    again = stack.dpo.get(path, **params)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert _web_backends(stack) and not _web_backends(stack) & kept


def test_health_and_readiness_carry_no_personal_data(stack: Stack) -> None:
    anonymous = Client(stack.server.url, None)
    try:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["ready"] is True and ready.json()["checks"]["lag"] >= 0
        doc = anonymous.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.1")
        assert "AccountCreatedEvent" in doc["components"]["schemas"]
        assert anonymous.get("/docs").status_code == 200
    finally:
        anonymous.close()


def test_zz_no_personal_value_in_the_web_service_log(stack: Stack) -> None:
    """Last of the module: everything above went through this server."""
    log = stack.server.log()
    assert "route=/v1/events" in log and "token=website" in log and "token=dpo-script" in log
    values = w.personal_values(e for e in stack.published if isinstance(e, dict)
                               and e.get("type") in ("AccountCreated", "ConnectionRecorded"))
    values |= {"gaspard.roitelet", "Gaspard.Roitelet", "+33612345678", "12.34.56.78"}
    assert w.occurring(values, log) == []
    assert "Traceback" not in log

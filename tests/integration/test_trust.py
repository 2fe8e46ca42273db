"""Trust (domain.md, "Time and trust"): the promises hold under bad input, forged events and
insiders. Each scenario goes through the public entry points: `registre publish`, the
publisher, a real worker on the real broker and PostgreSQL, and the `registre` commands."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import workers as w
from kafka import KafkaProducer

from events.catalogue import load_catalogue, topic_name
from events.codec import encode, key_refs
from events.keystore import KeyStore
from events.publisher import headers_for
from events.validation import parse_event
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration


class Site:
    """A running worker, the CLI pointed at the same services, and a forger with topic access."""

    def __init__(self, broker: str, database_url: str, master_key: bytes, keystore: KeyStore,
                 home: Path) -> None:
        self.broker, self.database_url, self.keystore = broker, database_url, keystore
        self.env = w.client_env(broker, database_url, master_key, home)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([REGISTRE, *args], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=120)

    def json(self, *args: str) -> dict:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def publish(self, *events: dict) -> None:
        w.publish(self.broker, self.keystore, events)

    def forge(self, event: dict, headers: list | None = None) -> None:
        """Write an event straight to the topic, as anyone with write access to it could."""
        parsed = parse_event(event, allow_registre=True)
        keys = self.keystore.keys_for_writing(key_refs(parsed))
        producer = KafkaProducer(bootstrap_servers=self.broker, acks="all")
        producer.send(topic_name("ledger"), key=parsed.subject_id.encode(),
                      value=encode(parsed, keys),
                      headers=headers if headers is not None else headers_for(
                          parsed.type, load_catalogue()))
        producer.flush()
        producer.close()

    def wait(self) -> None:
        w.wait_applied(self.broker, self.database_url)

    def keys(self, subject: str) -> list[str]:
        return [f"{r.category}/{r.period}" if r.period else r.category
                for r in self.keystore.key_refs(subject)]

    def dead_letters(self) -> list[tuple]:
        return w.query(self.database_url, "SELECT event_type, reason FROM"
                       " projections.dead_letters ORDER BY id")


@pytest.fixture
def site(broker, database_url, master_key, keystore, tmp_path):
    with w.Worker(broker, database_url, master_key, tmp_path / "home"):
        yield Site(broker, database_url, master_key, keystore, tmp_path / "home")


def account(subject: str, at: str) -> dict:
    return w.event("AccountCreated", subject, at, {
        "gender": "other", "last_name": "Canarivaux", "first_name": "Zephyrine",
        "email": f"{subject}@exemple-canari.fr", "postal_address": {
            "line1": "17 rue des Canaris", "postal_code": "69400", "city": "Villefranche",
            "country": "FR"}, "over_15": True, "notice_version": "2026-02"})


def test_instants_outside_1990_and_now_plus_five_minutes_are_refused(site, tmp_path):
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    lines = [w.event("ConnectionRecorded", "acc-time", at, {"ip": "203.0.113.9"})
             for at in ("0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z", soon,
                        "1989-12-31T23:59:59Z", w.ago(days=1))]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    done = site.cli("publish", str(path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    answer = json.loads(done.stdout)
    assert answer["published"] == 2
    assert [r["line"] for r in answer["rejected"]] == [1, 2, 4]
    assert all(r["error"].startswith("occurred_at: must lie between 1990-01-01T00:00:00Z")
               for r in answer["rejected"])
    assert len(done.stderr.strip().splitlines()) == 1
    site.wait()
    assert all(len(p) == 7 for p in (k.split("/")[1] for k in site.keys("acc-time")))


def test_a_release_or_deletion_dated_in_the_future_acts_as_of_its_arrival(site):
    invoiced, plain = "acc-future-invoiced", "acc-future-plain"
    site.publish(account(invoiced, w.ago(days=30)), account(plain, w.ago(days=30)),
                 w.event("DocumentIssued", invoiced, w.ago(days=20),
                         {"kind": "invoice", "document_ref": "F-77"}),
                 w.event("LegalHoldPlaced", invoiced, w.ago(days=10),
                         {"case_ref": "LIT-9", "reason": "dispute"}),
                 w.event("AccountDeleted", invoiced, w.ago(days=5), {"requested_by": "subject"}))
    site.wait()
    before = datetime.now(UTC)
    # forged onto the topic (the publisher refuses such instants): a release dated 2099
    site.forge(w.event("LegalHoldReleased", invoiced, "2099-01-01T00:00:00Z",
                       {"case_ref": "LIT-9"}))
    site.forge(w.event("AccountDeleted", plain, "2099-01-01T00:00:00Z",
                       {"requested_by": "subject"}))
    site.wait()
    after = datetime.now(UTC)
    # the release makes nothing fall due early: identity and contact keep their five years
    assert site.keys(invoiced) == ["contact", "identity"]
    report = site.json("audit", "erasure", invoiced)
    until = {r["category"]: r["until"] for r in report["retained"]}
    assert until["identity"].startswith(str(datetime.now(UTC).year + 5))
    # the deletion dated 2099 acted at once, stamped with the processors' clock
    assert site.keys(plain) == []
    erased = site.json("audit", "erasure", plain)
    assert before <= datetime.fromisoformat(erased["deleted_at"]) <= after
    stamps = [datetime.fromisoformat(d["at"]) for d in erased["destroyed"]]
    stamps += [datetime.fromisoformat(c["at"]) for c in erased["certificates"]]
    assert stamps and all(before <= at <= after for at in stamps)


def test_an_ended_subject_cannot_open_a_new_account(site, tmp_path):
    subject = "acc-ended"
    site.publish(account(subject, w.ago(days=3)),
                 w.event("DocumentIssued", subject, w.ago(days=2),
                         {"kind": "invoice", "document_ref": "F-1"}),
                 w.event("AccountDeleted", subject, w.ago(days=1), {"requested_by": "subject"}))
    site.wait()
    kept = site.json("audit", "erasure", subject)["retained"]
    path = tmp_path / "again.jsonl"
    again = account(subject, w.ago(hours=1))
    later = w.event("AccountUpdated", subject, w.ago(hours=1), {"first_name": "Zoe"})
    path.write_text(json.dumps(again) + "\n" + json.dumps(later) + "\n")
    done = site.cli("publish", str(path))
    answer = json.loads(done.stdout)
    assert done.returncode == 1 and answer["published"] == 1
    assert answer["rejected"] == [{"line": 1, "error": "subject_id: the account of this"
                                   " subject ended (deleted or erased): a new account needs a"
                                   " new subject_id"}]
    assert answer["redacted"] == [2]  # stored, its personal field redacted: said per line
    # the same event forged onto the topic: dead-lettered with its reason, nothing changes
    site.forge(account(subject, w.ago(hours=1)))
    site.wait()
    assert ("AccountCreated", "subject_id: the account of this subject ended (deleted or"
            " erased): a new account needs a new subject_id") in site.dead_letters()
    assert site.json("view", subject)["status"] == "deleted"
    assert site.json("audit", "erasure", subject)["retained"] == kept  # the deadline holds
    assert site.keys(subject) == ["contact", "identity"]


def test_only_the_ledger_writes_the_ledger_facts(site, master_key):
    subject = "acc-forged"
    site.publish(account(subject, w.ago(days=2)),
                 w.event("ConsentGiven", subject, w.ago(days=1), {
                     "purposes": ["marketing"], "notice_version": "2026-02",
                     "mechanism": "banner_ok"}))
    site.wait()
    view = site.json("view", subject)
    given = w.query(site.database_url, "SELECT doc->'consents'->'marketing'->>'event_id'"
                    " FROM projections.customer_view WHERE subject_id = %s", (subject,))[0][0]
    forged = [
        w.event("ConsentExpired", subject, w.ago(hours=1),
                {"purposes": ["marketing"], "choice_event_id": given}, source="registre"),
        w.event("KeysDestroyed", subject, w.ago(hours=1), {
            "keys": [{"category": "identity", "period": None, "reason": "forged"}],
            "trigger_event_id": None}, source="registre"),
    ]
    for event in forged:
        site.forge(event)
    # a signature under another key does not do either
    site.forge({**forged[0], "event_id": str(uuid.uuid4())},
               headers=[("registre-signature", b"\x00" * 64)])
    site.wait()
    dead = [(t, r) for t, r in site.dead_letters() if "ledger's signature" in r]
    assert sorted(t for t, _ in dead) == ["ConsentExpired", "ConsentExpired", "KeysDestroyed"]
    assert site.json("view", subject) == view  # nothing changed
    assert site.json("audit", "erasure", subject)["destroyed"] == []
    assert site.keys(subject) == ["contact", "identity"]


def test_one_subject_s_failure_stops_no_one_and_is_shown_where_operators_look(site):
    bad, good = "acc-bad-key", "acc-good"
    site.publish(account(bad, w.ago(days=2)), account(good, w.ago(days=2)))
    site.wait()
    # a key the rules cannot place (as an older registre wrote for a year before 1000)
    w.query(site.database_url, "INSERT INTO keystore.data_keys (subject_id, category, period,"
            " wrapped) SELECT subject_id, 'connection', '1-01', wrapped FROM"
            " keystore.data_keys WHERE subject_id = %s AND category = 'contact'"
            " RETURNING subject_id", (bad,))
    site.publish(w.event("AccountDeleted", bad, w.ago(hours=1), {"requested_by": "subject"}),
                 w.event("AccountDeleted", good, w.ago(hours=1), {"requested_by": "subject"}))
    site.wait()
    assert site.keys(good) == []  # the other subject's erasure went through
    assert site.json("view", bad)["status"] == "deleted"  # never dead-lettered silently
    waited = site.cli("wait", "--timeout", "30")
    assert waited.returncode == 1 and bad in waited.stderr and "Traceback" not in waited.stderr
    assert len(waited.stderr.strip().splitlines()) == 1
    problems = [(p["subject_id"], p["job"]) for p in site.json("audit", "schedule")["problems"]]
    assert (bad, "erasure") in problems
    for args in (("audit", "erasure", bad), ("audit", "schedule")):
        done = site.cli(*args)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    swept = site.cli("retention", "sweep", "--json")
    assert swept.returncode == 0, swept.stderr
    # repaired by hand, the retry round carries the erasure out (and certifies it)
    w.query(site.database_url, "DELETE FROM keystore.data_keys WHERE period = '1-01'"
            " RETURNING subject_id")
    w.wait_until(lambda: site.cli("wait", "--timeout", "5").returncode == 0, timeout=90)
    assert site.keys(bad) == []
    assert site.json("audit", "erasure", bad)["certificates"]


def test_verify_sees_deleted_checkpoint_rows_with_the_public_key_alone(site, tmp_path):
    site.publish(*[account(f"acc-v{i}", w.ago(days=1)) for i in range(5)])
    site.wait()
    pem = tmp_path / "registre.pub"
    exported = site.cli("keys", "public-key", "--output", str(pem))
    assert exported.returncode == 0, exported.stderr
    auditor = {k: v for k, v in site.env.items()
               if k not in ("REGISTRE_MASTER_KEY", "REGISTRE_SIGNING_KEY")}
    ok = subprocess.run([REGISTRE, "verify", "--public-key", str(pem), "--json"], env=auditor,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stdout + ok.stderr
    with psycopg.connect(site.database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE integrity.checkpoints DISABLE TRIGGER checkpoints_append_only")
        conn.execute("DELETE FROM integrity.checkpoints")
    bad = subprocess.run([REGISTRE, "verify", "--public-key", str(pem), "--json"],
                         env=auditor, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and not json.loads(bad.stdout)["ok"]
    assert "deleted from PostgreSQL" in json.loads(bad.stdout)["reason"]


def test_no_early_destruction_by_hand(site):
    later = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    done = site.cli("retention", "sweep", "--now", later)
    assert done.returncode == 1 and "--allow-future" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert site.cli("retention", "sweep", "--now", later, "--allow-future").returncode == 0


def test_files_holding_secrets_are_private_and_links_refused(site, tmp_path):
    site.publish(account("acc-files", w.ago(days=1)))
    site.wait()
    backup = tmp_path / "keys.jsonl"
    assert site.cli("keys", "backup", str(backup)).returncode == 0
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    target = tmp_path / "elsewhere.json"
    link = tmp_path / "export.json"
    link.symlink_to(target)
    done = site.cli("export", "acc-files", "--case", "REQ-1", "--output", str(link))
    assert done.returncode == 1 and "symbolic link" in done.stderr
    assert not target.exists()
    with psycopg.connect(site.database_url) as conn:  # nothing was read or recorded
        assert conn.execute("SELECT count(*) FROM projections.access_log").fetchone()[0] == 0


def test_analysts_see_closed_periods_only(database_url):
    today = datetime.now(UTC).date()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for day in (today, today - timedelta(days=1)):
            conn.execute("INSERT INTO projections.analytics_totals (measure, period, events,"
                         " subjects) VALUES ('accounts_created', %s, 20, 20)", (day,))
        days = [d for (d,) in conn.execute("SELECT day FROM analytics.accounts_created_daily")]
    assert days == [today - timedelta(days=1)]


def test_every_service_connects_as_its_own_login_and_no_socket_is_trusted(registre_env):
    run = subprocess.Popen([REGISTRE, "run"], env=registre_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    home = Path(registre_env["REGISTRE_HOME"])
    try:
        w.wait_until(lambda: "processors" in json.loads(
            (home / "runtime.json").read_text() if (home / "runtime.json").exists()
            else "{}"), timeout=90)
        _check_the_running_stack(home, registre_env)
    finally:
        run.terminate()
        run.wait(90)


def _check_the_running_stack(home: Path, env: dict[str, str]) -> None:
    for path in [home / "runtime.json", home / "master.key", home / "signing.key",
                 *(home / "secrets").iterdir()]:
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    info = subprocess.run([REGISTRE, "info"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert info.returncode == 0, info.stderr
    secret = {login: (home / "secrets" / f"{login}.password").read_text().strip()
              for login in ("postgres", "registre_processor_login",
                            "registre_publisher_login", "registre_compliance_login")}
    assert not [login for login, pw in secret.items() if pw in info.stdout]
    urls = json.loads((home / "runtime.json").read_text())["database_urls"]
    no_password = urls["owner"].split("&passfile=")[0].split("?passfile=")[0]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(no_password).close()
    with psycopg.connect(urls["processor"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE integrity.checkpoints DISABLE TRIGGER"
                         " checkpoints_append_only")
    with psycopg.connect(urls["compliance"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM projections.analytics_totals")
    with psycopg.connect(urls["publisher"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM keystore.data_keys")
    with psycopg.connect(urls["analyst"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables")
        oid = conn.execute("SELECT oid FROM pg_class WHERE relname = 'customer_view'"
                           ).fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_stat_get_tuples_inserted(%s)", (oid,))


def test_the_publisher_reports_lines_written_redacted(site):
    subject = "acc-redacted"
    site.publish(account(subject, w.ago(days=2)),
                 w.event("ErasureRequested", subject, w.ago(days=1), {"requested_by": "subject"}))
    site.wait()
    done = site.cli("publish", "-", stdin=json.dumps(w.event(
        "ConnectionRecorded", subject, w.ago(hours=1), {"ip": "203.0.113.7"})) + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"published": 1, "rejected": [], "redacted": [1]}

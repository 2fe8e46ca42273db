"""The compliance questions against a real broker and a real PostgreSQL: events published with
the real publisher, applied with `apply_batch` and the consent-history hook (plus the
registered projection hooks and the erasure enforcement hook, as a worker runs them), then
asked through `registre.services.audit` and the `registre` command."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.catalogue import topic_name
from events.codec import decode, encode
from events.keystore import KeyStore
from events.log import LogReader
from events.model import Event
from processors.rules import audit as folds
from processors.rules.fold import ViewFold
from processors.rules.policy import Policy
from processors.rules.timeutil import add_months
from projections import consent_history
from projections.access_log import MissingCaseReference, accesses
from projections.consent_history import consent_at_sql as consent_at_months
from projections.erasure_store import enforce_hook
from projections.positions import applied_positions
from projections.writer import Incoming, apply_batch
from registre.bootstrap import Registre
from registre.services import audit, export
from registre.services.replay import partition_for, subject_log, subject_records
from registre.settings import Settings
from tests.integration.workers import REGISTRE, client_env, personal_values, publish

pytestmark = pytest.mark.integration

PARIS = "+01:00"
T0 = datetime(2026, 3, 3, 9, 0, 0, 123456, tzinfo=UTC)  # 10:00:00.123456 in Paris
US = timedelta(microseconds=1)
CONSENT = {"notice_version": "2026-02", "mechanism": "banner_ok"}
PARTNER = "partenaire-voyages.example"
POLICY = Policy()
MONTHS = POLICY.consent_validity_months


def consent_at(records: list, purpose: str, at: datetime) -> dict[str, Any]:
    return folds.consent_at(records, purpose, at, MONTHS)


def consent_at_sql(conn: psycopg.Connection, subject: str, purpose: str,
                   at: datetime) -> dict[str, Any]:
    return consent_at_months(conn, subject, purpose, at, MONTHS)


def iso(at: datetime) -> str:
    return at.isoformat()


def ev(kind: str, subject: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
            "occurred_at": iso(at), "source": "website-test", "data": data}


def account(subject: str, at: datetime, tag: str) -> dict[str, Any]:
    return ev("AccountCreated", subject, at, {
        "gender": "female", "last_name": f"Canarivaux{tag}", "first_name": f"Zephyrine{tag}",
        "email": f"zephyrine.{tag.lower()}@exemple-canari.fr", "phone": "+33 6 71 42 93 58",
        "postal_address": {"line1": f"17 rue des Canaris {tag}", "line2": None,
                           "postal_code": "69400", "city": f"Villefranche{tag}",
                           "country": "FR"},
        "over_15": True, "notice_version": "2026-02"})


def connection(subject: str, at: datetime, tag: str) -> dict[str, Any]:
    return ev("ConnectionRecorded", subject, at, {
        "ip": "203.0.113.77", "user_agent": f"CanariBrowser/{tag}",
        "cookie_id": f"ck-canari-{tag.lower()}",
        "location": {"latitude": 45.98917, "longitude": 4.71889, "city": f"Canariville{tag}",
                     "country": "FR"}})


class Ledger:
    """Publish, then apply what the log holds as a worker does (in process)."""

    def __init__(self, broker: str, database_url: str, keystore: KeyStore, master_key: bytes,
                 home: Path) -> None:
        self.broker, self.database_url, self.keystore = broker, database_url, keystore
        self.registre = Registre(Settings.from_env(
            client_env(broker, database_url, master_key, home)))
        self.fold = self.registre.fold()
        self.hooks = [*(h for h, _ in self.registre.projection_hooks()),
                      enforce_hook(self.registre.policy, self.registre.clock,
                                   self.registre.signing_key)]

    def publish(self, events: list[dict[str, Any]], allow_registre: bool = False) -> None:
        publish(self.broker, self.keystore, events, allow_registre)
        self.catch_up()

    def catch_up(self) -> None:
        from registre.services.erasure import publish_outbox

        for _ in range(10):
            with psycopg.connect(self.database_url) as conn:
                start = applied_positions(conn)
            with LogReader(self.broker) as reader:
                items = [Incoming(r.topic, r.partition, r.offset, r.key, r.value, r.headers,
                                  r.timestamp_ms) for r in reader.read(start)]
            if items:
                asyncio.run(self._apply(items))
            with self.registre.publisher() as publisher:
                published = publish_outbox(publisher, self.database_url)
            if not published and not items:
                return
        raise AssertionError("the ledger did not settle")

    async def _apply(self, items: list[Incoming]) -> None:
        async with await psycopg.AsyncConnection.connect(self.database_url,
                                                         autocommit=True) as conn:
            out = await apply_batch(conn, items, self.fold, hooks=self.hooks,
                                    ledger_key=self.registre.signing_key.public_key())
        assert not out.dead, out.dead

    def conn(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)


@pytest.fixture
def ledger(broker: str, database_url: str, keystore: KeyStore, master_key: bytes,
           tmp_path: Path) -> Ledger:
    return Ledger(broker, database_url, keystore, master_key, tmp_path / "home")


def same_answer(service: dict[str, Any], pure: dict[str, Any]) -> bool:
    return {k: service[k] for k in pure} == pure


# --- 1. consent -----------------------------------------------------------------------------


def test_consent_at_the_instant_one_microsecond_before_and_13_months_later(ledger):
    s = "acc-consent-1"
    given = ev("ConsentGiven", s, T0, {"purposes": ["optimisation", "marketing",
                                                     "personalised_ads"], **CONSENT})
    withdrawn = ev("ConsentWithdrawn", s, T0 + timedelta(hours=4, minutes=30),
                   {"purposes": ["marketing"], "mechanism": "settings_page"})
    ledger.publish([account(s, T0 - timedelta(days=1), "A"), given, withdrawn])
    records = subject_records(ledger.broker, s)
    questions = [("marketing", T0), ("marketing", T0 - US), ("optimisation", add_months(T0, 13)),
                 ("optimisation", add_months(T0, 13) - US),
                 ("marketing", datetime.fromisoformat("2026-03-03T15:00:00+01:00")),
                 ("personalised_ads", datetime.fromisoformat("2026-03-03T15:00:00+01:00")),
                 ("third_party_cookies", T0)]
    with ledger.conn() as conn:
        answers = [audit.consent(conn, s, p, at, POLICY) for p, at in questions]
    for (p, at), ans in zip(questions, answers, strict=True):
        assert same_answer(ans, consent_at(records, p, at)), (p, at)
    at_choice, before, expired, still, withdrawn_at_15, granted_at_15, never = answers
    assert (at_choice["status"], at_choice["event_id"], at_choice["notice_version"],
            at_choice["mechanism"]) == ("granted", given["event_id"], "2026-02", "banner_ok")
    assert at_choice["at"] == "2026-03-03T09:00:00.123456Z"
    assert before["status"] == "none" and before["event_id"] is None
    assert expired["status"] == "expired" and expired["event_id"] == given["event_id"]
    assert still["status"] == "granted"
    assert (withdrawn_at_15["status"], withdrawn_at_15["event_id"]) == (
        "withdrawn", withdrawn["event_id"])
    assert granted_at_15["status"] == "granted"
    assert never["status"] == "none" and never["legal_basis"] == "consent"


def test_a_refusal_followed_by_a_grant(ledger):
    s = "vis-refuse-then-grant"
    refused = ev("ConsentRefused", s, T0, {"purposes": ["personalised_ads"], **CONSENT})
    granted = ev("ConsentGiven", s, T0 + timedelta(days=2),
                 {"purposes": ["personalised_ads"], "notice_version": "2026-03",
                  "mechanism": "settings_page"})
    ledger.publish([refused, granted])
    with ledger.conn() as conn:
        mid = audit.consent(conn, s, "personalised_ads", T0 + timedelta(days=1), POLICY)
        after = audit.consent(conn, s, "personalised_ads", T0 + timedelta(days=2), POLICY)
        late = audit.consent(conn, s, "personalised_ads", add_months(T0, 13), POLICY)
        recorded = consent_history.history(conn, s)
    assert (mid["status"], mid["event_id"]) == ("refused", refused["event_id"])
    assert (after["status"], after["event_id"], after["notice_version"]) == (
        "granted", granted["event_id"], "2026-03")
    assert late["status"] == "granted"  # 13 months after the refusal, not after the grant
    assert [(h["status"], h["event_id"], h["at"]) for h in recorded] == [
        ("refused", refused["event_id"], "2026-03-03T09:00:00.123456Z"),
        ("granted", granted["event_id"], "2026-03-05T09:00:00.123456Z")]


def test_consent_of_an_unknown_subject_or_purpose_is_refused(ledger):
    ledger.publish([ev("ConsentGiven", "vis-known", T0, {"purposes": ["marketing"],
                                                          **CONSENT})])
    with ledger.conn() as conn:
        with pytest.raises(audit.UnknownSubject):
            audit.consent(conn, "vis-nobody", "marketing", T0, POLICY)
        with pytest.raises(audit.BadQuestion):
            audit.consent(conn, "vis-known", "newsletter", T0, POLICY)
        assert audit.consent(conn, "vis-known", "service", T0,
                             POLICY)["legal_basis"] == "contract"


# --- 2. disclosures -------------------------------------------------------------------------


def test_a_disclosure_one_second_after_the_revocation_is_unauthorised(ledger):
    s = "acc-disclosures"
    share = {"recipient": PARTNER, "recipient_kind": "third_party", "service": "other",
             "categories": ["contact"], "country": "FR", "basis": "authorisation"}
    revoked_at = T0 + timedelta(minutes=2)
    events = [
        account(s, T0 - timedelta(days=3), "D"),
        ev("SharingAuthorised", s, T0, {"recipient": PARTNER,
                                        "categories": ["identity", "contact"],
                                        "purpose": "service"}),
        ev("DataShared", s, T0 + timedelta(minutes=1), share),
        ev("SharingRevoked", s, revoked_at, {"recipient": PARTNER}),
        ev("DataShared", s, revoked_at + timedelta(seconds=1), share),
        ev("DataShared", s, T0 + timedelta(minutes=3), {
            "recipient": "support-desk.example", "recipient_kind": "processor",
            "service": "assistance", "categories": ["identity", "contact"], "country": "IE",
            "basis": "processor_contract"}),
    ]
    ledger.publish(events)
    out = audit.disclosures(ledger.broker, s, POLICY, datetime.now(UTC))
    assert [d["event_id"] for d in out] == [events[2]["event_id"], events[4]["event_id"],
                                           events[5]["event_id"]]
    ok, late, processor = out
    assert ok["authorised"] is True and ok["authorisation_event_id"] == events[1]["event_id"]
    assert late["authorised"] is False and late["occurred_at"] == "2026-03-03T09:02:01.123456Z"
    assert "revoked" in late["reason"]
    assert processor["authorised"] is True and processor["basis"] == "processor_contract"
    with pytest.raises(audit.UnknownSubject):
        audit.disclosures(ledger.broker, "acc-nobody", POLICY, datetime.now(UTC))


# --- 4. as of -------------------------------------------------------------------------------


def test_as_of_needs_a_case_reference_and_every_read_is_recorded(ledger):
    s = "acc-as-of"
    created_at = T0
    ledger.publish([account(s, created_at, "F"),
                    ev("ConsentGiven", s, T0 + timedelta(minutes=5),
                       {"purposes": ["marketing"], **CONSENT}),
                    ev("AccountDeleted", s, T0 + timedelta(days=1), {"requested_by": "subject"})])
    now = datetime.now(UTC)
    ks = ledger.keystore
    with ledger.conn() as conn:
        for case in (None, "", "   "):
            with pytest.raises(MissingCaseReference):
                audit.as_of(ledger.broker, conn, ks, s, T0, case, "dpo", now, POLICY)
        assert accesses(conn, s) == []
        before = audit.as_of(ledger.broker, conn, ks, s, created_at - US, "LIT-2026-014",
                             "dpo", now, POLICY)
        assert before["existed"] is False and before["view"] is None
        during = audit.as_of(ledger.broker, conn, ks, s, T0 + timedelta(hours=1),
                             "LIT-2026-014", "dpo", now, POLICY)
        after = audit.as_of(ledger.broker, conn, ks, s, T0 + timedelta(days=2), "LIT-2026-015",
                            "auditor", now, POLICY)
        log = accesses(conn, s)
    view = during["view"]
    assert view["status"] == "active" and view["consents"]["marketing"] == "granted"
    # the deletion destroyed the keys (no document): the past view has no personal field left
    assert view["identity"] is None and view["contact"] is None
    assert after["view"]["status"] == "deleted"
    assert [(a["reader"], a["case_ref"]) for a in log] == [
        ("dpo", "LIT-2026-014"), ("dpo", "LIT-2026-014"), ("auditor", "LIT-2026-015")]
    assert log[1]["what"] == "as-of 2026-03-03T10:00:00.123456Z"
    assert during["access_id"] and during["case_ref"] == "LIT-2026-014"


def test_as_of_shows_personal_fields_where_the_keys_exist(ledger):
    s = "acc-as-of-live"
    ledger.publish([account(s, T0, "G"), connection(s, T0 + timedelta(minutes=1), "G")])
    ks = ledger.keystore
    with ledger.conn() as conn:
        ans = audit.as_of(ledger.broker, conn, ks, s, T0 + timedelta(hours=1), "REQ-1", "dpo",
                          datetime.now(UTC), POLICY)
        assert len(accesses(conn, s)) == 1
    view = ans["view"]
    assert view["identity"]["first_name"] == "ZephyrineG"
    assert view["contact"]["postal_address"]["city"] == "VillefrancheG"
    assert view["last_connection"]["ip"] == "203.0.113.77"


# --- 5. export ------------------------------------------------------------------------------


def _story(s: str, tag: str) -> list[dict[str, Any]]:
    return [
        account(s, T0, tag),
        connection(s, T0 + timedelta(minutes=1), tag),
        ev("ConsentGiven", s, T0 + timedelta(minutes=2), {"purposes": ["marketing"],
                                                           **CONSENT}),
        ev("SharingAuthorised", s, T0 + timedelta(minutes=3),
           {"recipient": PARTNER, "categories": ["identity"], "purpose": "service"}),
        ev("DataShared", s, T0 + timedelta(minutes=4), {
            "recipient": PARTNER, "recipient_kind": "third_party", "service": "other",
            "categories": ["identity", "contact"], "country": "FR", "basis": "authorisation"}),
    ]


def test_export_of_an_erased_subject_has_no_personal_field(ledger):
    erased, live = "acc-export-erased", "acc-export-live"
    erased_events = [*_story(erased, "E"),
                     ev("ErasureRequested", erased, T0 + timedelta(hours=1),
                        {"requested_by": "subject"})]
    live_events = _story(live, "L")
    ledger.publish(erased_events + live_events)
    now = datetime.now(UTC)
    ks = ledger.keystore
    with ledger.conn() as conn:
        doc = export.export(ledger.broker, conn, ks, erased, now, "dpo", "REQ-ERASED", POLICY)
        control = export.export(ledger.broker, conn, ks, live, now, "dpo", None, POLICY)
        reads = accesses(conn, erased)
    text = json.dumps(doc, ensure_ascii=False)
    needles = personal_values(erased_events)
    assert needles and not [n for n in needles if n in text]
    assert doc["personal_data"] == {"identity": None, "contact": None}
    assert all(set(c) == {"at", "event_id"} for c in doc["connections"])
    assert all(h["fields"] is None for h in doc["account_history"])
    assert doc["account"]["status"] == "erased"
    assert doc["erasure_certificates"], "the ErasureCompleted certificate is in the export"
    cert = doc["erasure_certificates"][0]
    assert {k["category"] for k in cert["destroyed"]} >= {"identity", "contact"}
    assert doc["retention"] is not None and doc["retention"]["status"] == "erased"
    assert doc["consents"]["marketing"]["status"] == "granted"
    assert doc["disclosures"][0]["authorised"] is False  # contact was never authorised
    assert doc["recipients"][0]["recipient"] == PARTNER
    assert {p["purpose"]: p["legal_basis"] for p in doc["processing"]}["marketing"] == "consent"
    assert [r["case_ref"] for r in reads] == ["REQ-ERASED"]
    # the control: the same document for a live subject does carry its personal data
    control_text = json.dumps(control, ensure_ascii=False)
    assert all(n in control_text for n in personal_values(live_events))
    assert control["personal_data"]["identity"]["last_name"] == "CanarivauxL"
    applying = {p["purpose"] for p in control["processing"] if p["applies"]}
    assert {"service", "marketing", "security"} <= applying
    assert "personalised_ads" not in applying
    summary = export.export_summary(control)
    assert summary["disclosures"] == 1 and summary["personal_fields_readable"] >= 2


# --- the log reader -------------------------------------------------------------------------


def test_replay_reads_one_partition_and_only_that_subject(ledger):
    subjects = [f"vis-replay-{i:03d}" for i in range(24)]
    events = [ev("ConsentGiven", s, T0 + timedelta(seconds=i), {"purposes": ["marketing"],
                                                                 **CONSENT})
              for i, s in enumerate(subjects * 2)]
    publish(ledger.broker, ledger.keystore, events)
    with LogReader(ledger.broker) as reader:
        everything = list(reader.read())
        ids = [tp.partition for tp in reader.partitions]
    used = {r.partition for r in everything}
    assert len(used) > 1, "the subjects spread over several partitions"
    for s in subjects[:6]:
        found = subject_log(ledger.broker, s)
        expected = [(r.partition, r.offset) for r in everything if r.key == s.encode()]
        assert [(f.partition, f.offset) for f in found] == expected
        assert {f.partition for f in found} == {partition_for(s, ids)}
        assert all(f.record.subject_id == s for f in found)


# --- the command line -----------------------------------------------------------------------


def test_the_audit_commands(ledger, master_key: bytes, tmp_path: Path):
    s = "acc-cli"
    given = ev("ConsentGiven", s, T0, {"purposes": ["marketing"], **CONSENT})
    ledger.publish([account(s, T0 - timedelta(days=1), "C"), given,
                    ev("ConsentWithdrawn", s, T0 + timedelta(hours=3),
                       {"purposes": ["marketing"], "mechanism": "settings_page"})])
    env = client_env(ledger.broker, ledger.database_url, master_key, tmp_path / "home")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([REGISTRE, *args], env=env,
                              capture_output=True, text=True, timeout=120)

    done = cli("audit", "consent", s, "--purpose", "marketing", "--at",
               "2026-03-03T10:00:00.123456+01:00", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "granted" and answer["event_id"] == given["event_id"]
    assert {"subject_id", "purpose", "at", "status", "event_id", "notice_version",
            "mechanism"} <= set(answer)
    text = cli("audit", "consent", s, "--purpose", "marketing", "--at",
               "2026-03-03T15:00:00+01:00")
    assert text.returncode == 0 and "status: withdrawn" in text.stdout
    for args, needle in [
        (("audit", "consent", s, "--purpose", "marketing", "--at", "yesterday"), "--at"),
        (("audit", "consent", s, "--purpose", "marketing", "--at", "2026-03-03T15:00:00"),
         "offset"),
        (("audit", "consent", s, "--purpose", "newsletter", "--at", "2026-03-03T15:00:00Z"),
         "unknown purpose"),
        (("audit", "consent", "acc-nobody", "--purpose", "marketing", "--at",
          "2026-03-03T15:00:00Z"), "no such subject"),
        (("audit", "as-of", s, "--at", "2026-03-03T15:00:00Z"), "case reference"),
        (("audit", "disclosures", "acc-nobody"), "no such subject"),
        (("export", "not an id"), "not an id"),
    ]:
        bad = cli(*args)
        assert bad.returncode == 1, (args, bad.stdout)
        assert len(bad.stderr.strip().splitlines()) == 1 and needle in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    as_of = cli("audit", "as-of", s, "--at", "2026-03-03T15:00:00+01:00", "--case", "LIT-7",
                "--reader", "dpo", "--json")
    assert as_of.returncode == 0, as_of.stderr
    view = json.loads(as_of.stdout)["view"]
    assert view["identity"]["first_name"] == "ZephyrineC"
    assert view["consents"]["marketing"] == "withdrawn"
    with ledger.conn() as conn:
        assert [(a["reader"], a["case_ref"]) for a in accesses(conn, s)] == [("dpo", "LIT-7")]
    out = tmp_path / "export.json"
    exported = cli("export", s, "--case", "REQ-9", "--output", str(out), "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["written"] == str(out)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert json.loads(out.read_text())["subject_id"] == s
    disclosures = cli("audit", "disclosures", s, "--json")
    assert disclosures.returncode == 0 and json.loads(disclosures.stdout) == []
    for args in (("audit", "erasure", s, "--json"), ("audit", "schedule", "--days", "30",
                                                     "--json")):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        json.loads(done.stdout)
    verify = cli("verify", "--json")
    assert verify.returncode in (0, 1) and "Traceback" not in verify.stderr
    assert set(json.loads(verify.stdout)) >= {"ok", "first_bad", "reason", "records_checked"}


# --- the projection is the pure fold --------------------------------------------------------

_OFFSETS = itertools.count()
_SUBJECTS = itertools.count()
PURPOSES = ["optimisation", "personalised_ads", "marketing", "third_party_cookies"]
BASE = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)

step = st.tuples(
    st.sampled_from(["ConsentGiven", "ConsentRefused", "ConsentWithdrawn", "ConsentExpired",
                     "duplicate"]),
    st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=3, unique=True),
    st.integers(0, 520),  # day: choices spread over more than 13 months
    st.sampled_from([0, 0, 1, 999_999]),  # microseconds: many exact ties
    st.sampled_from(["banner_ok", "settings_page", "api"]),
    st.integers(0, 1000),  # which earlier choice an expiry or a duplicate names
)


def _history(subject: str, steps: list[tuple]) -> list[Event]:
    events: list[Event] = []
    choices: list[Event] = []
    for i, (kind, purposes, day, micros, mechanism, pick) in enumerate(steps):
        at = BASE + timedelta(days=day, microseconds=micros)
        eid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{subject}/{i}"))
        if kind == "duplicate":
            if events:
                events.append(events[pick % len(events)])
            continue
        if kind == "ConsentExpired":
            target = choices[pick % len(choices)].event_id if choices else str(uuid.uuid4())
            data: dict[str, Any] = {"purposes": purposes, "choice_event_id": target}
        elif kind == "ConsentWithdrawn":
            data = {"purposes": purposes, "mechanism": mechanism}
        else:
            data = {"purposes": purposes, "notice_version": f"2026-0{1 + day % 9}",
                    "mechanism": mechanism}
        e = Event(eid, kind, subject, at, "registre" if kind == "ConsentExpired" else "web",
                  data)
        events.append(e)
        if kind != "ConsentExpired":
            choices.append(e)
    return events


@given(steps=st.lists(step, min_size=1, max_size=14), batch=st.integers(1, 6),
       extra=st.lists(st.integers(-5, 560), max_size=4))
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_the_projection_answers_what_the_log_says(database_url, steps, batch, extra):
    subject = f"vis-prop-{next(_SUBJECTS):05d}"
    events = _history(subject, steps)
    topic = topic_name("ledger")
    items = [Incoming(topic, 0, next(_OFFSETS), subject.encode(), encode(e, {}), (), 0)
             for e in events]
    records = [decode(i.value) for i in items]

    async def apply_all() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            for k in range(0, len(items), batch):
                out = await apply_batch(c, items[k:k + batch], ViewFold(POLICY),
                                        hooks=[consent_history.hook], archive=False)
                assert not out.dead, out.dead

    asyncio.run(apply_all())
    instants = {BASE + timedelta(days=d) for d in extra}
    for e in events:
        for at in (e.occurred_at, add_months(e.occurred_at, 13)):
            instants |= {at, at - US, at + US}
    with psycopg.connect(database_url) as conn:
        for purpose in PURPOSES:
            for at in sorted(instants):
                assert consent_at_sql(conn, subject, purpose, at) == \
                    consent_at(records, purpose, at), (purpose, at)

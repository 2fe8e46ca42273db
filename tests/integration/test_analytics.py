"""Analyst projections and database roles, on real PostgreSQL, read AS the analyst role.

Events are encoded with real keys (the key store), applied by `projections.writer.apply_batch`
with the analytics hook, and the views are read through the URL of `ensure_analyst_login`.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors

from events.catalogue import topic_name
from events.codec import decode, encode, key_refs, lookup_from
from events.keys import KeyRef
from events.keystore import KeyStore
from events.model import Event, new_event
from processors.rules.fold import ViewFold
from processors.rules.policy import Policy
from projections.analytics import (
    RESET_SQL,
    UNKNOWN,
    make_hook,
)
from projections.roles import (
    ANALYST_LOGIN,
    COMPLIANCE,
    PROCESSOR,
    ensure_analyst_login,
    ensure_login,
)
from projections.writer import Incoming, apply_batch
from tests.analytics_oracle import (
    MIN_SUBJECTS,
    VIEWS,
    analyst_figures,
)

pytestmark = pytest.mark.integration

TOPIC = topic_name("ledger")
D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 4, 10)
M3, M4 = date(2026, 3, 1), date(2026, 4, 1)
CALL_CENTRE, PARTNER = "centre-appels-assistance.example", "voyages-partenaire.example"
SUPPRESSED2 = (None, None, True)
LOGIN_PASSWORD = secrets.token_urlsafe(18)  # no socket is trusted: every login has one


def at(day: date, hour: int = 10, minute: int = 0, tz: timezone = UTC) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def ev(kind: str, subject: str, when: datetime, data: dict[str, Any] | None = None) -> Event:
    return new_event(kind, subject, data or {}, when, "website-test")


def account(subject: str, when: datetime) -> Event:
    return ev("AccountCreated", subject, when, {
        "gender": "other", "last_name": "Canarivaux", "first_name": "Zéphyrine",
        "email": f"{subject}@exemple-canari.fr",
        "postal_address": {"line1": "17 rue des Canaris", "postal_code": "69400",
                           "city": "Villefranche-Canari", "country": "FR"},
        "over_15": True, "notice_version": "2026-02"})


def connection(subject: str, when: datetime, country: str | None, located: bool = True) -> Event:
    data: dict[str, Any] = {"ip": "203.0.113.77", "user_agent": "CanariBrowser/7.3"}
    if located:
        data["location"] = {"latitude": 45.98917, "longitude": 4.71889,
                            "city": "Villefranche-Canari", "country": country}
    return ev("ConnectionRecorded", subject, when, data)


def consent(kind: str, subject: str, when: datetime, purposes: Sequence[str]) -> Event:
    data: dict[str, Any] = {"purposes": list(purposes), "mechanism": "banner_ok"}
    if kind != "ConsentWithdrawn":
        data["notice_version"] = "2026-02"
    return ev(kind, subject, when, data)


def shared(subject: str, when: datetime, recipient: str, basis: str) -> Event:
    kind = "processor" if basis == "processor_contract" else "third_party"
    return ev("DataShared", subject, when, {
        "recipient": recipient, "recipient_kind": kind, "service": "assistance",
        "categories": ["contact"], "country": "FR", "basis": basis})


def ended(kind: str, subject: str, when: datetime) -> Event:
    return ev(kind, subject, when, {"requested_by": "subject"})


class Ledger:
    """Encodes events with the key store's keys into log records of one partition."""

    def __init__(self, keystore: KeyStore) -> None:
        self.keystore = keystore
        self.offset = 0

    def items(self, events: Iterable[Event]) -> list[Incoming]:
        events = list(events)
        keys = self.keystore.keys_for_writing({r for e in events for r in key_refs(e)})
        out = []
        for e in events:
            out.append(Incoming(TOPIC, 0, self.offset, e.subject_id.encode(), encode(e, keys),
                                (), int(e.occurred_at.timestamp() * 1000)))
            self.offset += 1
        return out

    def lookup(self, items: Iterable[Incoming]):  # noqa: ANN201 - the KeyLookup of today
        refs = {KeyRef(r.subject_id, "location", r.occurred_at.strftime("%Y-%m"))
                for r in (decode(i.value) for i in items)}
        return lookup_from(self.keystore.keys_for_reading(refs))


def apply(database_url: str, batches: Sequence[Sequence[Incoming]], master_key: bytes,
          consumer: str = "ledger") -> None:
    async def run() -> None:
        hook = make_hook(master_key)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            for batch in batches:
                out = await apply_batch(conn, batch, ViewFold(Policy()), consumer=consumer,
                                        hooks=[hook], archive=False)
                assert not out.dead, out.dead

    asyncio.run(run())


def view_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for view, (_, keys, figures) in VIEWS.items():
            cols = ", ".join((*keys, *figures, "suppressed"))
            out[view] = sorted(conn.execute(f"SELECT {cols} FROM analytics.{view}").fetchall())
    return out


def scripted_population() -> list[list[Event]]:
    """Three batches; some groups of 10+ subjects, others smaller (see the expected rows)."""
    a = [f"acc-a{i:02d}" for i in range(12)]
    b = [f"acc-b{i:02d}" for i in range(4)]
    v = [f"vis-v{i:02d}" for i in range(10)]
    first: list[Event] = []
    # 12 accounts on D1 (one at 00:30 in UTC+2 on D2 local time: still D1 in UTC), 4 on D2
    first += [account(s, at(D1, 9, i)) for i, s in enumerate(a[:11])]
    first += [account(a[11], at(D2, 0, 30, timezone(timedelta(hours=2))))]
    first += [account(s, at(D2, 9, i)) for i, s in enumerate(b)]
    # D1 FR: 12 subjects, 15 connections (three of them twice, the second time in batch 2)
    first += [connection(s, at(D1, 12, i), "FR") for i, s in enumerate(a)]
    # D1 consent: optimisation asked 12 (8 granted, 4 refused), marketing asked 8 (granted)
    first += [consent("ConsentGiven", s, at(D1, 13), ["optimisation", "marketing"])
              for s in a[:8]]
    first += [consent("ConsentRefused", s, at(D1, 13), ["optimisation"]) for s in a[8:]]
    second: list[Event] = []
    second += [connection(s, at(D1, 18), "FR") for s in a[:3]]
    # D2: 4 subjects from BE (suppressed), 10 with no location at all (unknown)
    second += [connection(s, at(D2, 12), "BE") for s in b]
    second += [connection(s, at(D2, 13), None, located=False) for s in a[:10]]
    # D2 withdrawals: personalised_ads 10, marketing 2
    second += [consent("ConsentWithdrawn", s, at(D2, 14), ["personalised_ads"]) for s in a[:10]]
    second += [consent("ConsentWithdrawn", s, at(D2, 15), ["marketing"]) for s in a[:2]]
    # March: the call centre got 12 subjects' data (13 disclosures), the partner 3
    second += [shared(s, at(D2, 16), CALL_CENTRE, "processor_contract") for s in a]
    second += [shared(a[0], at(D2, 17), CALL_CENTRE, "processor_contract")]
    second += [shared(s, at(D2, 16), PARTNER, "authorisation") for s in a[:3]]
    third: list[Event] = []
    # April: 10 subjects to the call centre
    third += [shared(s, at(D3, 9), CALL_CENTRE, "processor_contract") for s in a[:10]]
    # deletions: 2 on D2 (suppressed), 10 on D3; erasures: 10 visitors on D2, 3 on D3
    third += [ended("AccountDeleted", s, at(D2, 20)) for s in b[:2]]
    third += [ended("AccountDeleted", s, at(D3, 10)) for s in a[:10]]
    third += [ended("ErasureRequested", s, at(D2, 21)) for s in v]
    third += [ended("ErasureRequested", s, at(D3, 11)) for s in (a[10], a[11], b[2])]
    return [first, second, third]


EXPECTED = {
    "accounts_created_daily": [(D1, 12, 12, False), (D2, *SUPPRESSED2)],
    "accounts_deleted_daily": [(D2, *SUPPRESSED2), (D3, 10, 10, False)],
    "erasures_daily": [(D2, 10, 10, False), (D3, *SUPPRESSED2)],
    "connections_daily": [(D1, "FR", 15, 12, False), (D2, "BE", *SUPPRESSED2),
                          (D2, UNKNOWN, 10, 10, False)],
    "consent_daily": [(D1, "marketing", None, None, None, None, None, True),
                      (D1, "optimisation", 12, 8, 4, Decimal("0.6667"), 12, False)],
    "withdrawals_daily": [(D2, "marketing", *SUPPRESSED2),
                          (D2, "personalised_ads", 10, 10, False)],
    "disclosures_monthly": [(M3, CALL_CENTRE, "processor_contract", 13, 12, False),
                            (M3, PARTNER, "authorisation", *SUPPRESSED2),
                            (M4, CALL_CENTRE, "processor_contract", 10, 10, False)],
}


@pytest.fixture
def analyst_url(database_url: str) -> str:
    return ensure_analyst_login(database_url, password=LOGIN_PASSWORD)


def test_every_aggregate_for_a_scripted_population(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes
) -> None:
    ledger = Ledger(keystore)
    batches = [ledger.items(events) for events in scripted_population()]
    batches.append(batches[0][:5] + batches[1][-3:])  # the same records again: no change
    apply(database_url, batches, master_key)
    got = view_rows(analyst_url)
    assert got == EXPECTED
    everything = [i for batch in batches for i in batch]
    assert analyst_figures([decode(i.value) for i in everything], ledger.lookup(everything)) == got


def test_the_analyst_is_refused_everything_but_the_analytics_views(
    database_url: str, analyst_url: str
) -> None:
    with psycopg.connect(database_url) as conn:
        consent_history = [f"{s}.{t}" for s, t in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relname ILIKE '%consent%' AND c.relkind IN"
            " ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('analytics', 'pg_catalog',"
            " 'information_schema')").fetchall()]
        every_table = [f"{s}.{t}" for s, t in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm')"
            " AND n.nspname NOT IN ('analytics', 'pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%'").fetchall()]
    named = ["projections.customer_view", "keystore.data_keys", "projections.access_log",
             "projections.analytics_members", "projections.analytics_totals",
             "tombstones.destroyed_keys", "public.registre_migrations",
             "projections.contact_lookup", "credentials.tokens", *consent_history]
    assert set(named) <= set(every_table)  # the consent history only where it exists
    with psycopg.connect(analyst_url, autocommit=True) as conn:
        for table in (*named, *every_table):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM {table} LIMIT 1")
        for view in VIEWS:
            conn.execute(f"SELECT * FROM analytics.{view}").fetchall()
            conn.execute(f"SELECT * FROM {view}").fetchall()  # search_path = analytics
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        conn.execute("SET default_transaction_read_only = off")  # only a convenience:
        for statement in (  # privileges refuse writes and new objects anyway
            "INSERT INTO analytics.erasures_daily (day) VALUES (current_date)",
            "CREATE TABLE analytics.mine (x int)",
            "CREATE TABLE public.mine (x int)",
            "CREATE TEMPORARY TABLE mine (x int)",
            "CREATE VIEW analytics.peek AS SELECT * FROM projections.analytics_totals",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)


def test_analytics_holds_only_coarse_views_and_no_subject_is_linked_to_a_country(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes
) -> None:
    ledger = Ledger(keystore)
    batches = [ledger.items(events) for events in scripted_population()]
    apply(database_url, batches, master_key)
    allowed = {"day", "month", "country", "purpose", "recipient", "basis", "accounts",
               "erasures", "connections", "asked", "granted", "refused", "consent_rate",
               "withdrawals", "disclosures", "subjects", "suppressed"}
    with psycopg.connect(database_url) as conn:
        kinds = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'analytics'").fetchall()
        assert sorted(kinds) == sorted((v, "v") for v in VIEWS)
        columns = {c for (c,) in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'analytics'")}
        assert columns <= allowed
        subjects = {r[0] for r in conn.execute("SELECT subject_id FROM projections.customer_view")}
        dims = {d for row in conn.execute(
            "SELECT dim1, dim2 FROM projections.analytics_totals") for d in row}
        assert not dims & subjects
        members = conn.execute(
            "SELECT dim1, member FROM projections.analytics_members"
            " WHERE measure = 'connections'").fetchall()
    located = [m for country, m in members if country != UNKNOWN]
    assert located and all(m.startswith("k:") for m in located)
    assert not {m[2:] for m in located} & subjects
    with psycopg.connect(analyst_url, autocommit=True) as conn:
        dump = repr(conn.execute(
            "SELECT * FROM analytics.connections_daily").fetchall())
    assert "Villefranche" not in dump and "203.0.113" not in dump and "acc-" not in dump


def test_rebuild_after_a_key_destruction_counts_that_country_as_unknown(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes
) -> None:
    ledger = Ledger(keystore)
    subjects = [f"acc-r{i:02d}" for i in range(12)]
    items = ledger.items(connection(s, at(D1, 12, i), "FR") for i, s in enumerate(subjects))
    apply(database_url, [items], master_key)
    assert view_rows(analyst_url)["connections_daily"] == [(D1, "FR", 12, 12, False)]
    keystore.destroy([KeyRef(s, "location", "2026-03") for s in subjects[:2]],
                     datetime.now(UTC), "erasure requested")
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        for sql in (*RESET_SQL, "DELETE FROM projections.customer_view",
                    "DELETE FROM projections.applied_events", "DELETE FROM projections.offsets"):
            conn.execute(sql)
    apply(database_url, [items], master_key)
    rebuilt = view_rows(analyst_url)["connections_daily"]
    assert rebuilt == [(D1, "FR", 10, 10, False), (D1, UNKNOWN, *SUPPRESSED2)]
    records = [decode(i.value) for i in items]
    assert analyst_figures(records, ledger.lookup(items))["connections_daily"] == rebuilt


def test_the_processor_role_runs_the_batch_writer_and_the_hook(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes
) -> None:
    processor_url = ensure_login(database_url, PROCESSOR, "registre_test_processor", LOGIN_PASSWORD)
    with psycopg.connect(processor_url) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (False,)
    ledger = Ledger(keystore)
    batches = [ledger.items(events) for events in scripted_population()]
    apply(processor_url, batches, master_key)
    assert view_rows(analyst_url) == EXPECTED


def test_compliance_reads_projections_appends_accesses_and_gets_no_key(
    database_url: str, keystore: KeyStore, master_key: bytes
) -> None:
    ledger = Ledger(keystore)
    apply(database_url, [ledger.items(scripted_population()[0])], master_key)
    url = ensure_login(database_url, COMPLIANCE, "registre_test_compliance", LOGIN_PASSWORD)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM projections.customer_view").fetchone()[0] == 16
        conn.execute("INSERT INTO projections.access_log (reader, subject_id, case_ref, what)"
                     " VALUES ('dpo', 'acc-a00', 'CASE-1', 'as-of')")
        assert conn.execute("SELECT count(*) FROM projections.access_log").fetchone() == (1,)
        conn.execute("SELECT * FROM analytics.consent_daily").fetchall()
        for statement in (
            "SELECT 1 FROM keystore.data_keys",
            "SELECT 1 FROM projections.analytics_members",
            "UPDATE projections.customer_view SET status = 'erased'",
            "DELETE FROM projections.access_log",
            # row-level security: an access entry without a case is refused
            "INSERT INTO projections.access_log (reader, subject_id, case_ref, what)"
            " VALUES ('dpo', 'acc-a00', '  ', 'as-of')",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)


def test_a_membership_row_is_keyed_by_its_five_values_and_holds_a_token_or_a_subject(
    database_url: str,
) -> None:
    """Migration 021: one narrow key per (group, member); a free-text dimension cannot make
    two groups share one, and the member check still refuses anything but ``s:`` or a token."""
    insert = ("INSERT INTO projections.analytics_members (measure, period, dim1, dim2, member)"
              " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING key")
    token = "k:" + "0123456789abcdef" * 4
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys = [conn.execute(insert, row).fetchall() for row in (
            ("disclosures", M3, "a|", "b", "s:acc-1"),
            ("disclosures", M3, "a", "|b", "s:acc-1"),  # the same characters, split elsewhere
            ("disclosures", M3, "a", "|b", "s:acc-1"),  # the same row again: not inserted
            ("connections", D1, "FR", "", token),
            ("connections", D2, "FR", "", token))]
        assert [len(k) for k in keys] == [1, 1, 0, 1, 1]
        assert len({k[0] for k in keys if k}) == 4
        for member in ("acc-1", "x:acc-1", "k:abc", "k:" + "g" * 64, token + "0", token + "\n"):
            with pytest.raises(errors.CheckViolation):
                conn.execute(insert, ("connections", D1, "FR", "", member))


def test_a_table_added_by_a_later_migration_follows_the_default_privileges(
    database_url: str, analyst_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE projections.later (x int)")
        conn.execute("INSERT INTO projections.later VALUES (1)")
    processor = ensure_login(database_url, PROCESSOR, "registre_test_processor", LOGIN_PASSWORD)
    compliance = ensure_login(database_url, COMPLIANCE, "registre_test_compliance", LOGIN_PASSWORD)
    with psycopg.connect(processor, autocommit=True) as conn:
        conn.execute("INSERT INTO projections.later VALUES (2)")
    with psycopg.connect(compliance, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM projections.later").fetchone() == (2,)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO projections.later VALUES (3)")
    with psycopg.connect(analyst_url, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT 1 FROM projections.later")


def test_row_level_security_is_forced_and_denies_a_mistaken_grant(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes
) -> None:
    ledger = Ledger(keystore)
    apply(database_url, [ledger.items(scripted_population()[0])], master_key)
    with psycopg.connect(database_url, autocommit=True) as conn:
        flags = conn.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
            " WHERE oid IN ('projections.customer_view'::regclass,"
            " 'projections.access_log'::regclass) ORDER BY 1").fetchall()
        assert flags == [("access_log", True, True), ("customer_view", True, True)]
        # someone grants the analyst a projection by mistake: still no row
        conn.execute("GRANT USAGE ON SCHEMA projections TO registre_analyst")
        conn.execute("GRANT SELECT ON projections.customer_view TO registre_analyst")
    with psycopg.connect(analyst_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM projections.customer_view").fetchone() == (0,)


def test_roles_migration_and_analyst_login_are_idempotent(
    database_url: str, analyst_url: str
) -> None:
    sql = resources.files("projections").joinpath("migrations/007_roles.sql").read_text()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql)  # again, on a database that has it
        conn.execute(f"ALTER ROLE {ANALYST_LOGIN} CREATEDB")  # tampered with
        conn.execute(f"GRANT registre_compliance TO {ANALYST_LOGIN}")
    assert ensure_analyst_login(database_url, password=LOGIN_PASSWORD) == analyst_url
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT rolcanlogin, rolcreatedb, rolsuper, rolbypassrls FROM pg_roles"
            " WHERE rolname = %s", (ANALYST_LOGIN,)).fetchone() == (True, False, False, False)
        groups = conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (ANALYST_LOGIN,)
        ).fetchall()
        assert groups == [("registre_analyst",)]
    with psycopg.connect(analyst_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ANALYST_LOGIN,)


README_QUERIES = (  # the examples of the README's analyst section, verbatim
    """SELECT day, country, connections, subjects
FROM connections_daily
WHERE NOT suppressed AND day >= date '2026-03-01'
ORDER BY day, connections DESC""",
    """SELECT purpose, sum(granted) AS granted, sum(asked) AS asked,
       round(sum(granted)::numeric / sum(asked), 4) AS consent_rate,
       count(*) FILTER (WHERE suppressed) AS days_suppressed
FROM consent_daily
WHERE day >= date '2026-03-01' AND day < date '2026-04-01'
GROUP BY purpose ORDER BY purpose""",
    """SELECT day, c.accounts AS created, d.accounts AS deleted, e.erasures
FROM accounts_created_daily c
FULL JOIN accounts_deleted_daily d USING (day)
FULL JOIN erasures_daily e USING (day)
ORDER BY day""",
    """SELECT month, recipient, basis, disclosures, subjects
FROM disclosures_monthly
WHERE NOT suppressed
ORDER BY month, disclosures DESC""",
)


def test_the_readme_queries_run_as_the_analyst(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes
) -> None:
    ledger = Ledger(keystore)
    apply(database_url, [ledger.items(events) for events in scripted_population()], master_key)
    with psycopg.connect(analyst_url, autocommit=True) as conn:
        results = [conn.execute(q).fetchall() for q in README_QUERIES]
    assert results[0] == [(D1, "FR", 15, 12), (D2, UNKNOWN, 10, 10)]
    assert results[1] == [("marketing", None, None, None, 1),
                          ("optimisation", 8, 12, Decimal("0.6667"), 0)]
    assert results[2] == [(D1, 12, None, None), (D2, None, None, 10), (D3, None, 10, None)]
    assert results[3] == [(M3, CALL_CENTRE, "processor_contract", 13, 12),
                          (M4, CALL_CENTRE, "processor_contract", 10, 10)]


# --- random populations --------------------------------------------------------------------

COUNTRIES = ("FR", "BE", None, "absent")  # None: location without a country; absent: no location
PURPOSES = ("marketing", "optimisation")
SHARES = ((CALL_CENTRE, "processor_contract"), (PARTNER, "authorisation"))


ACTIONS = ("connect", "given", "refused", "withdrawn", "share", "end")


@st.composite
def actions(draw: st.DrawFn) -> tuple[int, Any]:
    """(hour after D1 00:00 UTC, event factory (subject, instant) -> Event)."""
    hour = draw(st.integers(1, 47))
    action = draw(st.sampled_from(ACTIONS))
    if action == "connect":
        country = draw(st.sampled_from(COUNTRIES))
        return hour, lambda s, t: connection(s, t, country if country != "absent" else None,
                                             located=country != "absent")
    if action in ("given", "refused", "withdrawn"):
        kind = {"given": "ConsentGiven", "refused": "ConsentRefused",
                "withdrawn": "ConsentWithdrawn"}[action]
        purposes = draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2, unique=True))
        return hour, lambda s, t: consent(kind, s, t, purposes)
    if action == "share":
        recipient, basis = draw(st.sampled_from(SHARES))
        return hour, lambda s, t: shared(s, t, recipient, basis)
    kind = draw(st.sampled_from(["AccountDeleted", "ErasureRequested"]))
    return hour, lambda s, t: ended(kind, s, t)


@st.composite
def populations(draw: st.DrawFn) -> tuple[list[Event], set[str], int]:
    """Subjects over two days (D1, D2): a few common actions that each subject takes or not
    (so that groups land on both sides of the threshold), plus a few actions of their own."""
    events: list[Event] = []
    n = draw(st.integers(5, 30))
    prefix = uuid.uuid4().hex[:8]
    common = draw(st.lists(actions(), min_size=1, max_size=4))
    for i in range(n):
        subject = f"acc-{prefix}-{i:02d}"
        start = at(D1, 0, i)
        if draw(st.booleans()):
            events.append(account(subject, start))
        mine = [a for a in common if draw(st.integers(0, 3)) > 0]
        mine += draw(st.lists(actions(), max_size=2))
        for hour, make in sorted(mine, key=lambda a: a[0]):
            events.append(make(subject, start + timedelta(hours=hour)))
    destroyed = draw(st.sets(st.integers(0, n - 1), max_size=4))
    batch = draw(st.integers(1, 60))
    return events, {f"acc-{prefix}-{i:02d}" for i in destroyed}, batch


def _run_population(database_url: str, keystore: KeyStore, master_key: bytes,
                    population: tuple[list[Event], set[str], int]):  # noqa: ANN202
    events, destroyed, size = population
    events = sorted(events, key=lambda e: e.occurred_at)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        for sql in RESET_SQL:
            conn.execute(sql)
    ledger = Ledger(keystore)
    items = ledger.items(events)
    keystore.destroy([r for e in events for r in key_refs(e)
                      if r.category == "location" and r.subject_id in destroyed],
                     datetime.now(UTC), "test")
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    apply(database_url, batches, master_key, consumer="ledger-" + uuid.uuid4().hex[:8])
    return events, items, ledger


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(population=populations())
def test_property_no_visible_row_reflects_fewer_than_ten_subjects(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes,
    population: tuple[list[Event], set[str], int],
) -> None:
    events, _, _ = _run_population(database_url, keystore, master_key, population)
    destroyed = population[1]
    truth: dict[tuple[str, tuple[Any, ...]], set[str]] = {}  # from the plain events alone
    for e in events:
        day = e.occurred_at.date()
        groups: list[tuple[str, tuple[Any, ...]]] = []
        if e.type == "ConnectionRecorded":
            loc = e.data.get("location")
            country = (loc["country"] if loc and loc["country"] and e.subject_id not in destroyed
                       else UNKNOWN)
            groups = [("connections_daily", (day, country))]
        elif e.type in ("ConsentGiven", "ConsentRefused"):
            groups = [("consent_daily", (day, p)) for p in e.data["purposes"]]
        elif e.type == "ConsentWithdrawn":
            groups = [("withdrawals_daily", (day, p)) for p in e.data["purposes"]]
        elif e.type == "DataShared":
            groups = [("disclosures_monthly",
                       (day.replace(day=1), e.data["recipient"], e.data["basis"]))]
        else:
            view = {"AccountCreated": "accounts_created_daily",
                    "AccountDeleted": "accounts_deleted_daily",
                    "ErasureRequested": "erasures_daily"}[e.type]
            groups = [(view, (day,))]
        for g in groups:
            truth.setdefault(g, set()).add(e.subject_id)
    shown = view_rows(analyst_url)
    assert sum(len(rows) for rows in shown.values()) == len(truth)
    for view, (_, keys, _) in VIEWS.items():
        for row in shown[view]:
            key, values, suppressed = row[:len(keys)], row[len(keys):-1], row[-1]
            members = truth[(view, tuple(key))]
            if suppressed:
                assert len(members) < MIN_SUBJECTS and all(v is None for v in values)
            else:
                assert len(members) >= MIN_SUBJECTS and values[-1] == len(members)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(population=populations())
def test_property_views_equal_the_pure_figures_from_the_events(
    database_url: str, analyst_url: str, keystore: KeyStore, master_key: bytes,
    population: tuple[list[Event], set[str], int],
) -> None:
    _, items, ledger = _run_population(database_url, keystore, master_key, population)
    records = [decode(i.value) for i in items]
    assert view_rows(analyst_url) == analyst_figures(records, ledger.lookup(items))

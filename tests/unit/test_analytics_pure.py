"""Analyst aggregates computed directly from records: groups, country, suppression (no database)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events.codec import Record, decode, encode, key_refs, lookup_from
from events.crypto import new_data_key
from events.keys import KeyRef
from events.model import Event, new_event
from projections.analytics import (
    MAX_RECIPIENT,
    UNKNOWN,
    Group,
    connection_country,
    contributions,
)
from projections.roles import login_url
from tests.analytics_oracle import (
    MIN_SUBJECTS,
    VIEWS,
    Tally,
    analyst_figures,
    analyst_rows,
    tally,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
D0 = date(2026, 3, 2)


class Keys:
    """In-memory data keys, as the key store would hand them out."""

    def __init__(self) -> None:
        self.keys: dict[KeyRef, tuple[int, bytes]] = {}

    def seal(self, event: Event) -> Record:
        for ref in key_refs(event):
            self.keys.setdefault(ref, (1, new_data_key()))
        return decode(encode(event, self.keys))

    def lookup(self, without: set[str] = frozenset()):  # noqa: ANN201 - a KeyLookup
        return lookup_from({(ref, v): k for ref, (v, k) in self.keys.items()
                            if ref.subject_id not in without})


def ev(kind: str, subject: str, data: dict[str, Any] | None = None, at: datetime = T0) -> Event:
    return new_event(kind, subject, data or {}, at, "website-test")


def connection(subject: str, country: str | None, at: datetime = T0,
               location: bool = True) -> Event:
    data: dict[str, Any] = {"ip": "203.0.113.9"}
    if location:
        data["location"] = {"latitude": 45.5, "longitude": 4.8, "city": "Canari-Ville",
                            "country": country}
    return ev("ConnectionRecorded", subject, data, at)


def account(subject: str, at: datetime = T0) -> Event:
    return ev("AccountCreated", subject, {
        "gender": "other", "last_name": "Canarivaux", "first_name": "Zoé",
        "email": f"{subject}@exemple-canari.fr",
        "postal_address": {"line1": "1 rue des Canaris", "postal_code": "69400",
                           "city": "Canari-sur-Saône", "country": "FR"},
        "over_15": True, "notice_version": "2026-02"}, at)


def consent(kind: str, subject: str, purposes: list[str], at: datetime = T0) -> Event:
    data: dict[str, Any] = {"purposes": purposes, "mechanism": "banner_ok"}
    if kind != "ConsentWithdrawn":
        data["notice_version"] = "2026-02"
    return ev(kind, subject, data, at)


def shared(subject: str, recipient: str, basis: str, at: datetime = T0) -> Event:
    return ev("DataShared", subject, {
        "recipient": recipient, "recipient_kind": "processor", "service": "assistance",
        "categories": ["contact"], "country": "MA", "basis": basis}, at)


def test_each_event_type_lands_in_its_group_by_utc_day_or_month() -> None:
    keys = Keys()
    late = datetime(2026, 3, 3, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 2 March in UTC
    cases = {
        "AccountCreated": account("acc-1", late),
        "AccountDeleted": ev("AccountDeleted", "acc-1", {"requested_by": "subject"}, late),
        "ErasureRequested": ev("ErasureRequested", "vis-1", {"requested_by": "subject"}, late),
    }
    for kind, event in cases.items():
        (group, events, granted), = contributions(keys.seal(event))
        measure = {"AccountCreated": "accounts_created", "AccountDeleted": "accounts_deleted",
                   "ErasureRequested": "erasures"}[kind]
        assert (group, events, granted) == (Group(measure, D0), 1, 0)
    record = keys.seal(shared("acc-1", "centre-appels.example", "processor_contract",
                              datetime(2026, 3, 31, 23, 30, tzinfo=UTC)))
    assert contributions(record) == [
        (Group("disclosures", date(2026, 3, 1), "centre-appels.example", "processor_contract"),
         1, 0)]
    long = keys.seal(shared("acc-1", "r" * 5000 + ".example", "authorisation"))
    (group, _, _), = contributions(long)
    assert group.dim1 == "r" * MAX_RECIPIENT  # a group key always fits an index row
    given_ = keys.seal(consent("ConsentGiven", "acc-1", ["marketing", "optimisation"]))
    refused = keys.seal(consent("ConsentRefused", "acc-1", ["marketing"]))
    withdrawn = keys.seal(consent("ConsentWithdrawn", "acc-1", ["optimisation"]))
    assert contributions(given_) == [(Group("consent", D0, "marketing"), 1, 1),
                                     (Group("consent", D0, "optimisation"), 1, 1)]
    assert contributions(refused) == [(Group("consent", D0, "marketing"), 1, 0)]
    assert contributions(withdrawn) == [(Group("withdrawals", D0, "optimisation"), 1, 0)]
    other = keys.seal(ev("DocumentIssued", "acc-1", {"kind": "invoice", "document_ref": "F-1"}))
    assert contributions(other) == []


def test_country_is_read_from_the_sealed_leaf_or_unknown() -> None:
    keys = Keys()
    fr = keys.seal(connection("acc-1", "FR"))
    no_country = keys.seal(connection("acc-2", None))
    no_location = keys.seal(connection("acc-3", None, location=False))
    not_a_code = keys.seal(connection("acc-4", "France"))
    assert connection_country(fr, keys.lookup()) == "FR"
    assert connection_country(fr, None) == UNKNOWN  # no key at hand
    assert connection_country(fr, keys.lookup(without={"acc-1"})) == UNKNOWN  # key destroyed
    assert connection_country(no_country, keys.lookup()) == UNKNOWN
    assert connection_country(no_location, keys.lookup()) == UNKNOWN
    assert connection_country(not_a_code, keys.lookup()) == UNKNOWN
    # a ciphertext moved to another event does not open: unknown, not an error
    moved = Record(fr.type, no_country.event_id, fr.subject_id, fr.occurred_at, fr.source,
                   fr.data)
    assert connection_country(moved, keys.lookup()) == UNKNOWN


def test_distinct_subjects_duplicates_and_the_suppression_boundary() -> None:
    keys = Keys()
    records = [keys.seal(connection(f"acc-{i}", "FR")) for i in range(10)]
    records += [keys.seal(connection("acc-0", "FR", T0 + timedelta(hours=1)))]  # same subject
    records += [keys.seal(connection(f"acc-{i}", "BE")) for i in range(9)]
    records += records[:3]  # the same events again: applied once
    fr = tally(records, keys.lookup())[Group("connections", D0, "FR")]
    assert (fr.events, fr.granted, len(fr.subjects)) == (11, 0, 10)
    rows = analyst_figures(records, keys.lookup())["connections_daily"]
    assert rows == [(D0, "BE", None, None, True), (D0, "FR", 11, 10, False)]


def test_consent_rate_is_granted_over_asked_rounded_to_four_places() -> None:
    keys = Keys()
    records = [keys.seal(consent("ConsentGiven", f"acc-{i}", ["optimisation"]))
               for i in range(2)]
    records += [keys.seal(consent("ConsentRefused", f"acc-{i}", ["optimisation"]))
                for i in range(2, 12)]
    records += [keys.seal(consent("ConsentWithdrawn", f"acc-{i}", ["optimisation"]))
                for i in range(3)]
    figures = analyst_figures(records)
    assert figures["consent_daily"] == [
        (D0, "optimisation", 12, 2, 10, Decimal("0.1667"), 12, False)]
    assert figures["withdrawals_daily"] == [(D0, "optimisation", None, None, True)]


def test_the_views_state_the_threshold_once_and_it_is_the_contracts() -> None:
    sql = resources.files("projections").joinpath("migrations/006_analytics.sql").read_text()
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    assert re.findall(r"subjects\s*(?:<|>=)\s*([1-9]\d*)", code) == [str(MIN_SUBJECTS)]
    for view in VIEWS:
        assert f"CREATE VIEW analytics.{view} " in sql
        body = sql.split(f"CREATE VIEW analytics.{view} ", 1)[1].split(";", 1)[0]
        assert "FROM projections.analytics_visible" in body


@st.composite
def tallies(draw: st.DrawFn) -> dict[Group, Tally]:
    out = {}
    for measure, _, _ in VIEWS.values():
        for day in range(draw(st.integers(0, 3))):
            n = draw(st.integers(1, 25))
            events = draw(st.integers(n, 3 * n))
            granted = draw(st.integers(0, events)) if measure == "consent" else 0
            group = Group(measure, date(2026, 3, 1 + day), "x" if measure != "erasures" else "")
            out[group] = Tally(events, granted, {f"s{i}" for i in range(n)})
    return out


@settings(max_examples=200)
@given(tallies())
def test_no_visible_row_reflects_fewer_than_ten_subjects(groups: dict[Group, Tally]) -> None:
    rows = analyst_rows(groups)
    assert sum(len(r) for r in rows.values()) == len(groups)
    for view, (_, keys, figures) in VIEWS.items():
        for row in rows[view]:
            assert len(row) == len(keys) + len(figures) + 1
            *_, subjects, suppressed = row
            values = row[len(keys):-1]
            if suppressed:
                assert all(v is None for v in values)
            else:
                assert subjects >= MIN_SUBJECTS and None not in values


@st.composite
def populations(draw: st.DrawFn) -> list[Event]:
    events = []
    for i in range(draw(st.integers(0, 30))):
        subject = f"acc-{i:03d}"
        for _ in range(draw(st.integers(1, 3))):
            at = T0 + timedelta(hours=draw(st.integers(0, 47)))
            kind = draw(st.sampled_from(["connection", "given", "refused", "withdrawn"]))
            if kind == "connection":
                events.append(connection(subject, draw(st.sampled_from(["FR", "BE", None])), at))
            else:
                purposes = draw(st.lists(st.sampled_from(["marketing", "optimisation"]),
                                         min_size=1, max_size=2, unique=True))
                events.append(consent({"given": "ConsentGiven", "refused": "ConsentRefused",
                                       "withdrawn": "ConsentWithdrawn"}[kind], subject,
                                      purposes, at))
    return events


@settings(max_examples=50, deadline=None)
@given(populations())
def test_figures_agree_with_a_naive_count_over_plain_events(events: list[Event]) -> None:
    keys = Keys()
    records = [keys.seal(e) for e in events]
    figures = analyst_figures(records, keys.lookup())
    naive: dict[tuple[date, str], set[str]] = {}
    for e in events:
        if e.type == "ConnectionRecorded":
            country = e.data["location"]["country"] or UNKNOWN
            naive.setdefault((e.occurred_at.date(), country), set()).add(e.subject_id)
    assert [(d, c, len(s) >= MIN_SUBJECTS) for (d, c), s in sorted(naive.items())] == [
        (d, c, not suppressed) for d, c, *_, suppressed in figures["connections_daily"]]
    counted = {(d, c): n for d, c, _, n, suppressed in figures["connections_daily"]
               if not suppressed}
    assert counted == {k: len(s) for k, s in naive.items() if len(s) >= MIN_SUBJECTS}


def test_login_url_swaps_the_user_and_keeps_the_rest() -> None:
    socket = "postgresql://postgres:@/registre?host=/tmp/pg/sock"
    assert login_url(socket, "registre_analyst_login") == (
        "postgresql://registre_analyst_login@/registre?host=/tmp/pg/sock")
    tcp = "postgresql://owner:s3cret@db.example:5432/registre?sslmode=require&user=owner"
    assert login_url(tcp, "ana lyst", "p@ss") == (
        "postgresql://ana%20lyst:p%40ss@db.example:5432/registre?sslmode=require")
    kv = login_url("host=/tmp/pg dbname=registre user=postgres", "registre_analyst_login")
    assert "user=registre_analyst_login" in kv and "dbname=registre" in kv

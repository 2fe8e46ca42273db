"""Erasure, retention and legal hold: the pure decision, over years of simulated time."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.keys import KeyRef
from processors.rules.policy import Policy
from processors.rules.retention import (
    Decision,
    Destroy,
    Hold,
    Keep,
    SubjectFacts,
    consent_expires_at,
    decide,
    due_within,
    sharing_records_until,
)
from processors.rules.timeutil import (
    add_months,
    ensure_utc,
    format_utc,
    month_end,
    month_start,
    parse_period,
    period_of,
)
from tests.unit.facts import facts_from_events

S = "acc-000042"
P = Policy()
ALL = frozenset()
US = timedelta(microseconds=1)
DAY = timedelta(days=1)


def t(y: int, m: int = 1, d: int = 1, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, s, tzinfo=UTC)


def ident() -> list[KeyRef]:
    return [KeyRef(S, "identity", ""), KeyRef(S, "contact", "")]


def monthly(*periods: str, cats: tuple[str, ...] = ("connection", "location")) -> list[KeyRef]:
    return [KeyRef(S, c, p) for p in periods for c in cats]


def facts(
    ended_at: datetime | None = None,
    end_kind: str | None = None,
    documents: tuple[datetime, ...] = (),
    holds: tuple[Hold, ...] = (),
) -> SubjectFacts:
    if ended_at is not None and end_kind is None:
        end_kind = "deleted"
    return SubjectFacts(S, ended_at, end_kind, documents, holds)


def destroyed(d: Decision) -> set[KeyRef]:
    return {x.ref for x in d.destroy}


def kept(d: Decision) -> dict[KeyRef, Keep]:
    return {k.ref: k for k in d.keep}


# --------------------------------------------------------------------------- time arithmetic


def test_add_months_clamps_and_keeps_time() -> None:
    assert add_months(t(2024, 1, 31, 10, 30), 1) == t(2024, 2, 29, 10, 30)
    assert add_months(t(2023, 1, 31), 1) == t(2023, 2, 28)
    assert add_months(t(2024, 2, 29), 60) == t(2029, 2, 28)
    assert add_months(t(2024, 2, 29), 48) == t(2028, 2, 29)
    assert add_months(t(2026, 3, 15), -15) == t(2024, 12, 15)
    assert add_months(t(2026, 12, 1), 1) == t(2027, 1, 1)
    assert add_months(t(2026, 5, 5), 0) == t(2026, 5, 5)


def test_add_months_normalises_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    # 1 March 00:30 in Paris is 28 February 23:30 UTC: months are counted on the UTC calendar.
    assert add_months(datetime(2026, 3, 1, 0, 30, tzinfo=paris), 1) == t(2026, 3, 28, 23, 30)
    with pytest.raises(TypeError):
        add_months(t(2026), 1.5)  # type: ignore[arg-type]


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ensure_utc(datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(facts(), ident(), P, datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        facts_from_events(S, [("AccountDeleted", datetime(2026, 1, 1), {})])  # noqa: DTZ001


def test_periods() -> None:
    assert parse_period("2026-01") == (2026, 1)
    assert month_start("2026-12") == t(2026, 12, 1)
    assert month_end("2026-12") == t(2027, 1, 1)
    assert period_of(t(2026, 1, 31, 23, 59, 59)) == "2026-01"
    assert format_utc(t(2026, 3, 1)) == "2026-03-01T00:00:00Z"
    for bad in ("2026-13", "2026-1", "26-01", "", "2026-00", "2026/01"):
        with pytest.raises(ValueError):
            parse_period(bad)


# --------------------------------------------------------------------------- live account


def test_live_account_keeps_identity_and_contact() -> None:
    d = decide(facts(), ident(), P, t(2040))
    assert d.destroy == () and d.held == ()
    for k in d.keep:
        assert k.until is None and k.due_at is None and k.held_by == ()
        assert k.reason.startswith("account live")


def test_connection_key_due_13_months_after_the_end_of_its_month() -> None:
    keys = monthly("2026-01")
    due = t(2027, 3, 1)  # end of 2026-01 is 2026-02-01; + 13 months
    before = decide(facts(), keys, P, due - US)
    assert before.destroy == ()
    assert {k.until for k in before.keep} == {due}
    assert all("until 2027-03-01T00:00:00Z" in k.reason for k in before.keep)
    at = decide(facts(), keys, P, due)
    assert destroyed(at) == set(keys) and at.keep == ()
    assert all(x.due_at == due and x.reason.startswith("retention elapsed") for x in at.destroy)


def test_convention_keeps_every_record_at_least_13_months() -> None:
    for period in ("2026-01", "2026-02", "2027-12", "2028-02"):
        [key] = monthly(period, cats=("connection",))
        due = decide(facts(), [key], P, t(2020)).keep[0].until
        assert due is not None
        last_instant = month_end(period) - US
        first_instant = month_start(period)
        assert add_months(last_instant, 13) < due
        assert due == add_months(first_instant, 14)


def test_policy_changes_connection_retention() -> None:
    [key] = monthly("2026-01", cats=("location",))
    d = decide(facts(), [key], Policy(connection_location_months=6), t(2026, 8, 1))
    assert destroyed(d) == {key}
    assert decide(facts(), [key], Policy(connection_location_months=6), t(2026, 8, 1) - US).keep


# --------------------------------------------------------------------------- end of the account


@pytest.mark.parametrize("kind, word", [("deleted", "account deleted"), ("erased", "erasure")])
def test_end_without_document_destroys_everything_at_once(kind: str, word: str) -> None:
    end = t(2026, 4, 10, 8)
    keys = ident() + monthly("2026-03", "2026-04")
    before = decide(facts(end, kind), keys, P, end - US)
    assert before.destroy == ()
    d = decide(facts(end, kind), keys, P, end)
    assert destroyed(d) == set(keys) and d.keep == ()
    for x in d.destroy:
        assert x.due_at == end
        assert x.reason.startswith(word) and "2026-04-10T08:00:00Z" in x.reason


def test_document_retains_identity_and_contact_five_years_not_connection() -> None:
    end = t(2026, 4, 10, 8)
    five_years = t(2031, 4, 10, 8)
    f = facts(end, documents=(t(2025, 11, 20),))
    keys = ident() + monthly("2026-03")
    at_end = decide(f, keys, P, end)
    assert destroyed(at_end) == set(monthly("2026-03"))
    assert all("documents do not retain" in x.reason for x in at_end.destroy)
    for ref in ident():
        k = kept(at_end)[ref]
        assert k.until == five_years and k.due_at == five_years and k.held_by == ()
        assert k.reason.startswith("legal retention: document issued")
        assert "2031-04-10T08:00:00Z" in k.reason

    remaining = ident()
    assert decide(f, remaining, P, five_years - DAY).destroy == ()
    assert decide(f, remaining, P, five_years - US).destroy == ()
    at = decide(f, remaining, P, five_years)
    assert destroyed(at) == set(ident())
    later = decide(f, remaining, P, five_years + DAY)
    assert destroyed(later) == set(ident()) and later.keep == ()
    assert all(x.reason.startswith("legal retention ended") for x in later.destroy)
    assert all(x.due_at == five_years for x in later.destroy)


def test_erasure_with_document_also_retains_identity() -> None:
    end = t(2026, 1, 31, 12)
    f = facts(end, "erased", documents=(t(2026, 1, 2),))
    d = decide(f, ident(), P, end + DAY)
    assert d.destroy == ()
    assert {k.until for k in d.keep} == {t(2031, 1, 31, 12)}
    assert all("erasure requested" in k.reason for k in d.keep)


def test_document_after_the_end_does_not_retain() -> None:
    end = t(2026, 4, 10)
    f = facts(end, documents=(end + US,))
    assert destroyed(decide(f, ident(), P, end + DAY)) == set(ident())
    g = facts(end, documents=(end,))  # issued at the very instant of the end: it counts
    assert decide(g, ident(), P, end + DAY).destroy == ()


def test_end_in_the_future_of_now_is_not_known_yet() -> None:
    end = t(2027, 1, 1)
    d = decide(facts(end), ident() + monthly("2026-06"), P, t(2026, 7, 1))
    assert d.destroy == ()
    assert kept(d)[KeyRef(S, "identity", "")].reason.startswith("account live")


def test_connection_due_before_the_end_keeps_its_retention_reason() -> None:
    f = facts(t(2027, 6, 1))
    [key] = monthly("2026-01", cats=("connection",))
    [x] = decide(f, [key], P, t(2027, 7, 1)).destroy
    assert x.due_at == t(2027, 3, 1) and x.reason.startswith("retention elapsed")


def test_identity_retention_zero_months_destroys_at_end() -> None:
    end = t(2026, 4, 10)
    f = facts(end, documents=(t(2025, 1, 1),))
    pol = Policy(identity_contact_after_end_with_document_months=0)
    assert destroyed(decide(f, ident(), pol, end)) == set(ident())


# --------------------------------------------------------------------------- legal hold


def test_hold_before_deletion_blocks_every_destruction_until_release() -> None:
    end = t(2026, 4, 10, 8)
    hold = Hold("TGI-2026-17", ALL, t(2026, 2, 1), None)
    f = facts(end, documents=(t(2025, 11, 20),), holds=(hold,))
    keys = ident() + monthly("2025-01", "2026-03")
    for now in (end, end + DAY, t(2029), t(2031, 4, 10, 8) + DAY, t(2040)):
        d = decide(f, keys, P, now)
        assert d.destroy == (), now
        assert d.held == ("TGI-2026-17",)
        assert {k.ref for k in d.keep} == set(keys)
        for k in d.keep:
            assert k.held_by == ("TGI-2026-17",) and k.until is None
            assert "TGI-2026-17" in k.reason
    overdue = decide(f, keys, P, t(2040))
    assert all(k.due_at is not None and k.due_at < t(2040) for k in overdue.keep)
    assert all("is suspended" in k.reason for k in overdue.keep)

    released = replace(hold, released_at=t(2033, 6, 1))
    g = replace(f, holds=(released,))
    assert decide(g, keys, P, t(2033, 6, 1) - US).destroy == ()
    for now in (t(2033, 6, 1), t(2033, 6, 2), t(2045)):
        d = decide(g, keys, P, now)
        assert destroyed(d) == set(keys) and d.keep == () and d.held == ()
        assert all("suspended by legal hold TGI-2026-17" in x.reason for x in d.destroy)
        assert all("2033-06-01T00:00:00Z" in x.reason for x in d.destroy)


def test_release_before_due_date_leaves_no_trace_in_reason() -> None:
    hold = Hold("C-1", ALL, t(2026, 1, 1), t(2026, 2, 1))
    f = facts(t(2026, 6, 1), holds=(hold,))
    d = decide(f, ident(), P, t(2026, 6, 1))
    assert destroyed(d) == set(ident())
    assert all("legal hold" not in x.reason for x in d.destroy)


def test_hold_on_one_category_only() -> None:
    end = t(2026, 4, 10)
    hold = Hold("FISC-9", frozenset({"location"}), t(2026, 4, 1), None)
    f = facts(end, holds=(hold,))
    keys = ident() + monthly("2026-02", "2026-03")
    d = decide(f, keys, P, end + DAY)
    assert {x.ref.category for x in d.destroy} == {"identity", "contact", "connection"}
    assert {k.ref for k in d.keep} == set(monthly("2026-02", "2026-03", cats=("location",)))
    assert all(k.held_by == ("FISC-9",) for k in d.keep)
    assert d.held == ("FISC-9",)


def test_hold_not_yet_placed_or_covering_live_keys() -> None:
    hold = Hold("C-2", frozenset({"identity"}), t(2027), None)
    f = facts(t(2026, 4, 10), holds=(hold,))
    d = decide(f, ident(), P, t(2026, 5, 1))
    assert destroyed(d) == set(ident()) and d.held == ()
    # on a live account the hold is shown, the key is kept for both reasons
    live = decide(facts(holds=(hold,)), ident(), P, t(2027, 1, 2))
    k = kept(live)[KeyRef(S, "identity", "")]
    assert k.held_by == ("C-2",) and k.until is None and "account live" in k.reason
    assert kept(live)[KeyRef(S, "contact", "")].held_by == ()


def test_hold_covering_a_key_not_yet_due() -> None:
    hold = Hold("C-3", ALL, t(2026, 1, 1), None)
    [key] = monthly("2026-01", cats=("connection",))
    [k] = decide(facts(holds=(hold,)), [key], P, t(2026, 6, 1)).keep
    assert k.until is None and k.due_at == t(2027, 3, 1) and k.held_by == ("C-3",)
    assert "no destruction while it lasts" in k.reason


def test_two_holds_both_must_be_released() -> None:
    a = Hold("A", frozenset({"connection"}), t(2026, 1, 1), t(2027, 1, 1))
    b = Hold("B", ALL, t(2026, 2, 1), t(2028, 1, 1))
    f = facts(t(2026, 3, 1), holds=(a, b))
    keys = monthly("2026-01", cats=("connection",))
    assert kept(decide(f, keys, P, t(2026, 6, 1)))[keys[0]].held_by == ("A", "B")
    assert kept(decide(f, keys, P, t(2027, 6, 1)))[keys[0]].held_by == ("B",)
    [x] = decide(f, keys, P, t(2028, 1, 1)).destroy
    assert "legal hold A" in x.reason and "legal hold B" in x.reason


# --------------------------------------------------------------------------- facts from events


def test_facts_from_events() -> None:
    events = [
        ("LegalHoldReleased", t(2026, 9, 1), {"case_ref": "K1"}),
        ("ErasureRequested", t(2026, 8, 1), {"requested_by": "subject"}),
        ("AccountDeleted", t(2026, 7, 1), {"requested_by": "operator"}),
        ("DocumentIssued", t(2025, 2, 1), {"kind": "invoice", "document_ref": "F-1"}),
        ("DocumentIssued", t(2024, 2, 1), {"kind": "quote", "document_ref": "D-1"}),
        ("LegalHoldPlaced", t(2026, 1, 1),
         {"case_ref": "K1", "reason": "dispute", "categories": ["location"]}),
        ("LegalHoldPlaced", t(2026, 2, 1),
         {"case_ref": "K1", "reason": "dispute", "categories": ["connection"]}),
        ("LegalHoldReleased", t(2026, 3, 1), {"case_ref": "nothing-open"}),
        ("LegalHoldPlaced", t(2026, 10, 1), {"case_ref": "K1", "reason": "court_order"}),
        ("LegalHoldPlaced", t(2026, 11, 1),
         {"case_ref": "K2", "reason": "tax_audit", "categories": None}),
        ("ConnectionRecorded", t(2026, 1, 5), {}),
        ("ConsentGiven", t(2026, 1, 5), {"purposes": ["marketing"]}),
    ]
    f = facts_from_events(S, events)
    assert f.ended_at == t(2026, 7, 1) and f.end_kind == "deleted"
    assert f.documents == (t(2024, 2, 1), t(2025, 2, 1))
    assert f.holds == (
        Hold("K1", frozenset({"location", "connection"}), t(2026, 1, 1), t(2026, 9, 1)),
        Hold("K1", ALL, t(2026, 10, 1), None),
        Hold("K2", ALL, t(2026, 11, 1), None),
    )
    assert facts_from_events(S, reversed(events)) == f
    assert facts_from_events(S, []) == SubjectFacts(S)


def test_facts_erasure_first_and_widening_to_all() -> None:
    paris = timezone(timedelta(hours=2))
    f = facts_from_events(S, [
        ("ErasureRequested", datetime(2026, 5, 1, 2, tzinfo=paris), {}),
        ("AccountDeleted", t(2026, 5, 2), {}),
        ("LegalHoldPlaced", t(2026, 1, 1), {"case_ref": "K", "categories": ["identity"]}),
        ("LegalHoldPlaced", t(2026, 1, 2), {"case_ref": "K", "categories": []}),
    ])
    assert f.ended_at == t(2026, 5, 1) and f.ended_at.tzinfo is UTC and f.end_kind == "erased"
    assert f.holds == (Hold("K", ALL, t(2026, 1, 1), None),)


def test_facts_validation() -> None:
    with pytest.raises(ValueError):
        SubjectFacts(S, t(2026), None)
    with pytest.raises(ValueError):
        SubjectFacts(S, t(2026), "gone")
    with pytest.raises(ValueError):
        Hold("X", frozenset({"shoe_size"}), t(2026))
    with pytest.raises(ValueError):
        Hold("X", ALL, t(2026), t(2025))
    with pytest.raises(ValueError):
        facts_from_events(S, [("LegalHoldPlaced", t(2026), {"case_ref": "K",
                                                                   "categories": ["iban"]})])
    assert Hold("X", None, t(2026)).categories == ALL  # type: ignore[arg-type]


def test_bad_keys_are_refused() -> None:
    for bad in (KeyRef("someone-else", "identity", ""), KeyRef(S, "iban", ""),
                KeyRef(S, "connection", ""), KeyRef(S, "location", "2026-13"),
                KeyRef(S, "contact", "2026-01")):
        with pytest.raises(ValueError):
            decide(facts(), [bad], P, t(2026))


# --------------------------------------------------------------------------- determinism


def test_deterministic_sorted_and_duplicates_count_once() -> None:
    f = facts(t(2026, 4, 10), documents=(t(2026, 1, 1),),
              holds=(Hold("H", frozenset({"location"}), t(2026, 1, 1)),))
    keys = ident() + monthly("2025-01", "2025-12", "2026-04")
    d = decide(f, keys, P, t(2026, 5, 1))
    rng = random.Random(7)
    for _ in range(10):
        shuffled = keys * 2
        rng.shuffle(shuffled)
        assert decide(f, shuffled, P, t(2026, 5, 1)) == d
    assert list(d.destroy_refs) == sorted(d.destroy_refs)
    assert list(d.keep_refs) == sorted(d.keep_refs)


def test_idempotent_after_applying_destroys() -> None:
    f = facts(t(2026, 4, 10), documents=(t(2026, 1, 1),),
              holds=(Hold("H", frozenset({"location"}), t(2026, 1, 1)),))
    keys = ident() + monthly("2025-01", "2025-12", "2026-04")
    now = t(2026, 5, 1)
    first = decide(f, keys, P, now)
    assert first.destroy
    remaining = [k for k in keys if k not in set(first.destroy_refs)]
    again = decide(f, remaining, P, now)
    assert again.destroy == () and again.keep == first.keep
    assert decide(f, [], P, now) == Decision((), (), ("H",))


# --------------------------------------------------------------------------- schedule


def test_due_within_lists_what_falls_due_with_dates() -> None:
    end = t(2026, 4, 10)
    f = facts(end, documents=(t(2026, 1, 1),),
              holds=(Hold("H", frozenset({"location"}), t(2026, 1, 1)),))
    keys = ident() + monthly("2025-01")
    now = end - DAY
    items = due_within(f, keys, P, now, 0)
    # connection 2025-01 was due 2026-03-01 and not yet destroyed; location is held (overdue)
    assert [(type(i), i.ref.category, i.due_at) for i in items] == [
        (Destroy, "connection", t(2026, 3, 1)),
        (Keep, "location", t(2026, 3, 1)),
    ]
    assert items[1].held_by == ("H",)  # type: ignore[union-attr]
    live = facts(holds=())
    sched = due_within(live, monthly("2026-01", "2026-02"), P, t(2027, 2, 1), 30)
    assert [(i.ref.period, i.due_at) for i in sched] == [
        ("2026-01", t(2027, 3, 1)), ("2026-01", t(2027, 3, 1))]
    assert all(isinstance(i, Keep) for i in sched)
    assert due_within(live, monthly("2026-01"), P, t(2027, 2, 1), 27) == []
    assert len(due_within(live, monthly("2026-01"), P, t(2027, 2, 1), 28)) == 2
    assert due_within(live, ident(), P, t(2027), 10_000) == []
    deleted = facts(end)
    assert {i.due_at for i in due_within(deleted, ident(), P, end + DAY, 1)} == {end}
    with pytest.raises(ValueError):
        due_within(live, ident(), P, t(2027), -1)


def test_consent_and_sharing_durations() -> None:
    assert consent_expires_at(t(2026, 1, 31, 9), P) == t(2027, 2, 28, 9)
    assert consent_expires_at(t(2026, 1, 31), Policy(consent_validity_months=6)) == t(2026, 7, 31)
    assert sharing_records_until(facts(), P) is None
    assert sharing_records_until(facts(t(2026, 4, 10)), P) == t(2031, 4, 10)


# --------------------------------------------------------------------------- simulated years


def _month_index(period: str) -> int:
    y, m = int(period[:4]), int(period[5:])
    return y * 12 + m - 1


def _first_of(index: int) -> datetime:
    return t(index // 12, index % 12 + 1, 1)


def simulate(
    f: SubjectFacts,
    created: datetime,
    steps: list[datetime],
    policy: Policy = P,
) -> tuple[dict[KeyRef, datetime], set[KeyRef]]:
    """Run the clock over ``steps``: logins on the 15th of each month while the account lives
    create monthly keys; at every step decide and apply. Returns destruction step per key."""
    store: set[KeyRef] = set()
    created_keys: set[KeyRef] = set()
    destroyed_at: dict[KeyRef, datetime] = {}
    previous = created - DAY
    for now in steps:
        if previous < created <= now:
            store |= set(ident())
        login = t(now.year, now.month, 15, 12)
        for at in (login, add_months(login, -1)):
            live = f.ended_at is None or at < f.ended_at
            if previous < at <= now and at >= created and live:
                store |= set(monthly(period_of(at)))
        created_keys |= store
        d = decide(f, store, policy, now)
        for x in d.destroy:
            assert x.ref not in destroyed_at
            assert x.due_at <= now and x.reason
            destroyed_at[x.ref] = now
        for k in d.keep:
            assert k.until is None or k.until > now
            if k.due_at is not None and k.due_at <= now:  # overdue only under a hold
                assert k.held_by and any(h.active_at(now) for h in f.holds)
        store -= set(d.destroy_refs)
        assert decide(f, store, policy, now).destroy == ()  # idempotent at each step
        previous = now
    return destroyed_at, created_keys


def test_six_and_a_half_years_month_by_month_with_document_and_hold() -> None:
    created = t(2024, 1, 15, 9)
    end = t(2026, 4, 10, 8)
    hold = Hold("PRUD-2025-3", frozenset({"location"}), t(2025, 12, 5), t(2027, 2, 20))
    f = facts(end, documents=(t(2024, 11, 20),), holds=(hold,))
    steps = [_first_of(_month_index("2024-01") + i) for i in range(90)]  # to 2031-06-01
    destroyed_at, created_keys = simulate(f, created, steps)

    periods = sorted({k.period for k in created_keys if k.period})
    assert periods[0] == "2024-01" and periods[-1] == "2026-03"  # no login after the deletion
    assert destroyed_at.keys() == created_keys  # everything is gone by mid-2031

    def first_step(at: datetime) -> datetime:
        return min(s for s in steps if s >= at)

    for ref in created_keys:
        if ref.category in ("identity", "contact"):
            expected = first_step(t(2031, 4, 10, 8))  # deletion + 5 years
        else:
            regular = _first_of(_month_index(ref.period) + 14)
            due = min(regular, end)
            expected = first_step(due)
            if ref.category == "location" and hold.placed_at <= expected < hold.released_at:
                expected = first_step(hold.released_at)
        assert destroyed_at[ref] == expected, ref

    assert destroyed_at[KeyRef(S, "identity", "")] == t(2031, 5, 1)
    assert destroyed_at[KeyRef(S, "connection", "2024-01")] == t(2025, 3, 1)
    assert destroyed_at[KeyRef(S, "location", "2024-10")] == t(2025, 12, 1)  # before the hold
    assert destroyed_at[KeyRef(S, "connection", "2024-11")] == t(2026, 1, 1)
    assert destroyed_at[KeyRef(S, "location", "2024-11")] == t(2027, 3, 1)  # after release
    assert destroyed_at[KeyRef(S, "connection", "2026-03")] == t(2026, 5, 1)  # at deletion
    assert destroyed_at[KeyRef(S, "location", "2026-03")] == t(2027, 3, 1)


def test_six_years_month_by_month_live_then_erased_without_document() -> None:
    created = t(2024, 3, 3)
    end = t(2029, 2, 14, 16, 45)
    f = facts(end, "erased")
    steps = [_first_of(_month_index("2024-03") + i) for i in range(72)]  # to 2030-02-01
    destroyed_at, created_keys = simulate(f, created, steps)
    assert destroyed_at.keys() == created_keys
    assert destroyed_at[KeyRef(S, "identity", "")] == t(2029, 3, 1)
    for ref in created_keys:
        if ref.period:
            regular = _first_of(_month_index(ref.period) + 14)
            assert destroyed_at[ref] == (regular if regular <= end else t(2029, 3, 1)), ref
    # while the account lived, at most 14 months of connection keys were ever alive at once
    alive_max = max(
        sum(1 for r in created_keys if r.category == "connection"
            and t(2024, 3, 1) <= month_start(r.period) <= s and destroyed_at[r] > s)
        for s in steps if s < end
    )
    assert alive_max <= 14


# --------------------------------------------------------------------------- properties

CATS = ("identity", "contact", "connection", "location")
instants = st.datetimes(
    min_value=datetime(2020, 1, 1),  # noqa: DTZ001
    max_value=datetime(2034, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@st.composite
def holds_st(draw: st.DrawFn) -> Hold:
    placed = draw(instants)
    released = draw(st.none() | st.timedeltas(timedelta(0), timedelta(days=2000)))
    return Hold(
        draw(st.sampled_from(["A", "B", "C"])),
        frozenset(draw(st.sets(st.sampled_from(CATS), max_size=2))),
        placed,
        None if released is None else placed + released,
    )


@st.composite
def facts_st(draw: st.DrawFn) -> SubjectFacts:
    end = draw(st.none() | instants)
    return SubjectFacts(
        S,
        end,
        None if end is None else draw(st.sampled_from(["deleted", "erased"])),
        tuple(draw(st.lists(instants, max_size=3))),
        tuple(draw(st.lists(holds_st(), max_size=3))),
    )


periods_st = st.builds(
    lambda y, m: f"{y:04d}-{m:02d}", st.integers(2019, 2034), st.integers(1, 12)
)
keys_st = st.lists(
    st.one_of(
        st.sampled_from(ident()),
        st.builds(lambda c, p: KeyRef(S, c, p), st.sampled_from(["connection", "location"]),
                  periods_st),
    ),
    max_size=12,
)
policy_st = st.builds(
    Policy,
    identity_contact_after_end_with_document_months=st.integers(0, 120),
    connection_location_months=st.integers(0, 60),
)
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def active_covering(f: SubjectFacts, category: str, now: datetime) -> list[Hold]:
    return [h for h in f.holds if h.active_at(now) and h.covers(category)]


@PROPS
@given(facts_st(), keys_st, policy_st, instants)
def test_prop_every_key_exactly_once_with_reasons_and_dates(
    f: SubjectFacts, keys: list[KeyRef], pol: Policy, now: datetime
) -> None:
    d = decide(f, keys, pol, now)
    assert sorted(d.destroy_refs + d.keep_refs) == sorted(set(keys))
    assert list(d.destroy_refs) == sorted(d.destroy_refs)
    assert list(d.keep_refs) == sorted(d.keep_refs)
    for x in d.destroy:
        assert x.reason and x.due_at <= now
    for k in d.keep:
        assert k.reason
        assert k.until is None or k.until > now
        if k.held_by:
            assert k.until is None
    assert d.held == tuple(sorted({h.case_ref for h in f.holds if h.active_at(now)}))


@PROPS
@given(facts_st(), keys_st, policy_st, instants)
def test_prop_never_destroys_a_held_category(
    f: SubjectFacts, keys: list[KeyRef], pol: Policy, now: datetime
) -> None:
    d = decide(f, keys, pol, now)
    for x in d.destroy:
        assert not active_covering(f, x.ref.category, now)
    for k in d.keep:
        assert set(k.held_by) == {h.case_ref for h in active_covering(f, k.ref.category, now)}


@PROPS
@given(facts_st(), keys_st, policy_st, instants)
def test_prop_never_keeps_identity_of_an_ended_subject_without_documents(
    f: SubjectFacts, keys: list[KeyRef], pol: Policy, now: datetime
) -> None:
    d = decide(f, keys, pol, now)
    ended = f.ended_at is not None and f.ended_at <= now
    for k in d.keep:
        if k.held_by:
            continue
        if ended and k.ref.category in ("identity", "contact"):
            assert f.documents_before_end()
            assert f.ended_at is not None
            assert now < add_months(f.ended_at, pol.identity_contact_after_end_with_document_months)
        if ended and k.ref.category in ("connection", "location"):
            raise AssertionError(f"connection data kept after the end: {k}")
        if k.ref.period:
            assert now < add_months(month_end(k.ref.period), pol.connection_location_months)


@PROPS
@given(facts_st(), keys_st, policy_st, instants, st.timedeltas(timedelta(0), timedelta(days=4000)))
def test_prop_destroyed_stays_destroyed_later(
    f: SubjectFacts, keys: list[KeyRef], pol: Policy, now: datetime, step: timedelta
) -> None:
    later = now + step
    before = decide(f, keys, pol, now)
    after = decide(f, keys, pol, later)
    after_destroyed = set(after.destroy_refs)
    after_kept = {k.ref: k for k in after.keep}
    for x in before.destroy:
        if x.ref in after_destroyed:
            continue
        # only a hold active at the later instant may suspend it again
        assert after_kept[x.ref].held_by and active_covering(f, x.ref.category, later)
    unheld = replace(f, holds=())
    gone = set(decide(unheld, keys, pol, now).destroy_refs)
    assert gone <= set(decide(unheld, keys, pol, later).destroy_refs)


@PROPS
@given(facts_st(), keys_st, policy_st, instants)
def test_prop_idempotent(f: SubjectFacts, keys: list[KeyRef], pol: Policy, now: datetime) -> None:
    first = decide(f, keys, pol, now)
    remaining = [k for k in keys if k not in set(first.destroy_refs)]
    again = decide(f, remaining, pol, now)
    assert again.destroy == ()
    assert again.keep == first.keep and again.held == first.held


@PROPS
@given(facts_st(), keys_st, policy_st, instants, st.integers(0, 800))
def test_prop_schedule_is_consistent_with_decide(
    f: SubjectFacts, keys: list[KeyRef], pol: Policy, now: datetime, days: int
) -> None:
    items = due_within(f, keys, pol, now, days)
    horizon = now + timedelta(days=days)
    assert [(i.due_at, i.ref) for i in items] == sorted((i.due_at, i.ref) for i in items)
    for i in items:
        assert i.due_at is not None and i.due_at <= horizon
    d = decide(f, keys, pol, now)
    assert set(d.destroy_refs) <= {i.ref for i in items}
    # every unheld key listed as kept is really destroyed by the horizon (if nothing changes)
    at_horizon = set(decide(f, keys, pol, horizon).destroy_refs)
    for i in items:
        if isinstance(i, Keep) and not i.held_by and not active_covering(f, i.ref.category,
                                                                         horizon):
            assert i.ref in at_horizon

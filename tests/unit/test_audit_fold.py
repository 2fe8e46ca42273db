"""The pure audit folds of `processors.rules.audit`: consent at an instant, disclosures judged at
their instant, the customer view as of an instant; and the partition of a subject."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.codec import Record
from processors.rules import audit
from processors.rules.audit import disclosures
from processors.rules.policy import Policy
from processors.rules.timeutil import add_months
from registre.services.replay import partition_for

POLICY = Policy()


def consent_at(records: list[Record], purpose: str, at: datetime,
               months: int = POLICY.consent_validity_months) -> dict:
    return audit.consent_at(records, purpose, at, months)


def as_of(records: list[Record], at: datetime) -> dict | None:
    return audit.as_of(records, at, POLICY)

S = "acc-000042"
T0 = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def rec(kind: str, at: datetime, subject: str = S, event_id: str | None = None,
        **data) -> Record:
    return Record(kind, event_id or str(uuid.uuid4()), subject, at, "test", data)


def given_(at, *purposes, notice="2026-01", mechanism="banner_ok", **kw):
    return rec("ConsentGiven", at, purposes=list(purposes), notice_version=notice,
               mechanism=mechanism, **kw)


def refused(at, *purposes, notice="2026-01", mechanism="banner_ok"):
    return rec("ConsentRefused", at, purposes=list(purposes), notice_version=notice,
               mechanism=mechanism)


def withdrawn(at, *purposes, mechanism="settings_page"):
    return rec("ConsentWithdrawn", at, purposes=list(purposes), mechanism=mechanism)


# --- consent --------------------------------------------------------------------------------


def test_consent_exactly_at_the_instant_of_the_choice_and_one_microsecond_before():
    g = given_(T0, "marketing")
    log = [g]
    at = consent_at(log, "marketing", T0)
    assert at["status"] == "granted"
    assert (at["event_id"], at["notice_version"], at["mechanism"]) == (
        g.event_id, "2026-01", "banner_ok")
    assert at["choice_at"] == "2026-03-03T14:00:00Z"
    before = consent_at(log, "marketing", T0 - US)
    assert before["status"] == "none" and before["event_id"] is None


def test_consent_expires_13_months_after_the_choice():
    log = [given_(T0, "marketing")]
    expiry = add_months(T0, 13)
    assert expiry == datetime(2027, 4, 3, 14, 0, tzinfo=UTC)
    assert consent_at(log, "marketing", expiry - US)["status"] == "granted"
    late = consent_at(log, "marketing", expiry)
    assert late["status"] == "expired"
    assert late["event_id"] == log[0].event_id  # the choice that expired is the proof
    assert late["expires_at"] == "2027-04-03T14:00:00Z"


def test_a_refusal_expires_too_but_a_withdrawal_does_not():
    r = refused(T0, "personalised_ads")
    w = withdrawn(T0, "marketing")
    far = add_months(T0, 40)
    assert consent_at([r], "personalised_ads", far)["status"] == "expired"
    assert consent_at([w], "marketing", far)["status"] == "withdrawn"


def test_the_validity_comes_from_the_policy():
    log = [given_(T0, "marketing")]
    assert consent_at(log, "marketing", add_months(T0, 6), months=6)["status"] == "expired"
    assert consent_at(log, "marketing", add_months(T0, 6))["status"] == "granted"


def test_a_refusal_followed_by_a_grant():
    r = refused(T0, "marketing", mechanism="banner_ok")
    g = given_(T0 + timedelta(days=2), "marketing", mechanism="settings_page", notice="2026-02")
    log = [r, g]
    assert consent_at(log, "marketing", T0 + timedelta(days=1))["status"] == "refused"
    now = consent_at(log, "marketing", T0 + timedelta(days=2))
    assert (now["status"], now["event_id"], now["mechanism"], now["notice_version"]) == (
        "granted", g.event_id, "settings_page", "2026-02")
    # 13 months after the refusal but not after the grant: the grant is what counts
    assert consent_at(log, "marketing", add_months(T0, 13))["status"] == "granted"


def test_withdrawal_of_one_purpose_among_several():
    g = given_(T0, "optimisation", "marketing", "personalised_ads")
    w = withdrawn(T0 + timedelta(hours=1), "marketing")
    log = [g, w]
    later = T0 + timedelta(hours=2)
    assert consent_at(log, "marketing", later)["status"] == "withdrawn"
    assert consent_at(log, "marketing", later)["event_id"] == w.event_id
    assert consent_at(log, "optimisation", later)["status"] == "granted"
    assert consent_at(log, "personalised_ads", later)["event_id"] == g.event_id
    assert consent_at(log, "third_party_cookies", later)["status"] == "none"


def test_latest_instant_wins_and_ties_go_to_the_later_record_in_the_log():
    g = given_(T0 + timedelta(hours=1), "marketing")
    late_refusal = refused(T0, "marketing")  # published after, but happened before
    assert consent_at([g, late_refusal], "marketing", T0 + timedelta(hours=2))["status"] == \
        "granted"
    a, b = given_(T0, "marketing"), refused(T0, "marketing")
    assert consent_at([a, b], "marketing", T0)["event_id"] == b.event_id
    assert consent_at([b, a], "marketing", T0)["event_id"] == a.event_id


def test_a_recorded_expiry_counts_from_its_instant_and_only_for_its_choice():
    g = given_(T0, "marketing")
    exp_at = T0 + timedelta(days=30)
    e = rec("ConsentExpired", exp_at, purposes=["marketing"], choice_event_id=g.event_id)
    log = [g, e]
    assert consent_at(log, "marketing", exp_at - US)["status"] == "granted"
    ans = consent_at(log, "marketing", exp_at)
    assert ans["status"] == "expired" and ans["expiry_event_id"] == e.event_id
    g2 = given_(exp_at + timedelta(days=1), "marketing")
    assert consent_at([*log, g2], "marketing", exp_at + timedelta(days=2))["status"] == "granted"


def test_an_event_published_twice_counts_once():
    g = given_(T0, "marketing")
    w = withdrawn(T0 + timedelta(hours=1), "marketing")
    again = rec("ConsentWithdrawn", T0 + timedelta(hours=1), event_id=w.event_id,
                purposes=["marketing"], mechanism="api")
    ans = consent_at([g, w, again], "marketing", T0 + timedelta(hours=2))
    assert ans["event_id"] == w.event_id and ans["mechanism"] == "settings_page"


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError):
        consent_at([], "marketing", datetime(2026, 3, 3))  # noqa: DTZ001


@given(st.lists(st.tuples(st.sampled_from(["g", "r", "w"]), st.integers(0, 40)), max_size=8),
       st.integers(-1, 500))
@settings(max_examples=200, deadline=None)
def test_the_answer_is_the_last_choice_at_or_before(choices, day):
    log = []
    for kind, d in choices:
        maker = {"g": given_, "r": refused, "w": withdrawn}[kind]
        log.append(maker(T0 + timedelta(days=d), "marketing"))
    at = T0 + timedelta(days=day)
    ans = consent_at(log, "marketing", at)
    eligible = [(r.occurred_at, i, r) for i, r in enumerate(log) if r.occurred_at <= at]
    if not eligible:
        assert ans["status"] == "none"
        return
    _, _, last = max(eligible, key=lambda t: (t[0], t[1]))
    assert ans["event_id"] == last.event_id
    status = {"ConsentGiven": "granted", "ConsentRefused": "refused",
              "ConsentWithdrawn": "withdrawn"}[last.type]
    if status != "withdrawn" and at >= add_months(last.occurred_at, 13):
        status = "expired"
    assert ans["status"] == status


# --- disclosures ----------------------------------------------------------------------------

PARTNER = "partenaire-voyages.example"


def auth(at, recipient=PARTNER, categories=("identity", "contact")):
    return rec("SharingAuthorised", at, recipient=recipient, categories=list(categories),
               purpose="service")


def revoke(at, recipient=PARTNER):
    return rec("SharingRevoked", at, recipient=recipient)


def shared(at, recipient=PARTNER, kind="third_party", categories=("contact",),
           basis="authorisation"):
    return rec("DataShared", at, recipient=recipient, recipient_kind=kind, service="other",
               categories=list(categories), country="FR", basis=basis)


def test_a_disclosure_one_second_after_the_revocation_is_unauthorised():
    a = auth(T0)
    s1 = shared(T0 + timedelta(minutes=1))
    r = revoke(T0 + timedelta(minutes=2))
    s2 = shared(T0 + timedelta(minutes=2, seconds=1))
    out = disclosures([a, s1, r, s2])
    assert [d["event_id"] for d in out] == [s1.event_id, s2.event_id]
    assert out[0]["authorised"] is True and out[0]["authorisation_event_id"] == a.event_id
    assert out[1]["authorised"] is False
    assert "revoked at 2026-03-03T14:02:00Z" in out[1]["reason"]
    assert {k for k in out[1]} >= {"recipient", "categories", "basis", "occurred_at",
                                   "authorised", "event_id"}


def test_authorisation_is_judged_by_instant_not_by_log_order():
    s = shared(T0 + timedelta(minutes=5))
    r = revoke(T0 + timedelta(minutes=10))  # published before the disclosure, happened after
    a = auth(T0)
    assert disclosures([r, s, a])[0]["authorised"] is True
    assert disclosures([shared(T0 - US), a])[0]["authorised"] is False
    assert disclosures([shared(T0), a])[0]["authorised"] is True  # at the very instant


def test_every_category_must_be_covered_by_that_recipient():
    a = auth(T0, categories=("identity",))
    other = auth(T0, recipient="autre.example", categories=("contact",))
    s = shared(T0 + timedelta(minutes=1), categories=("identity", "contact"))
    out = disclosures([a, other, s])[0]
    assert out["authorised"] is False and "contact" in out["reason"]
    reauth = auth(T0 + timedelta(seconds=30), categories=("identity", "contact"))
    assert disclosures([a, reauth, s])[0]["authorised"] is True
    narrower = auth(T0 + timedelta(seconds=30), categories=("identity",))
    wide_first = auth(T0, categories=("identity", "contact"))
    assert disclosures([wide_first, narrower, s])[0]["authorised"] is False  # replaced


def test_processor_and_legal_obligation_bases_authorise_themselves():
    proc = shared(T0, recipient="support-desk.example", kind="processor",
                  categories=("identity", "contact"), basis="processor_contract")
    law = shared(T0, recipient="tax.example", kind="third_party", basis="legal_obligation")
    fake = shared(T0, recipient="ads.example", kind="third_party", basis="processor_contract")
    out = {d["recipient"]: d for d in disclosures([proc, law, fake])}
    assert out["support-desk.example"]["authorised"] is True
    assert out["tax.example"]["authorised"] is True
    assert out["ads.example"]["authorised"] is False


def test_a_reauthorisation_after_a_revocation_counts_again():
    log = [auth(T0), revoke(T0 + timedelta(hours=1)), auth(T0 + timedelta(hours=2)),
           shared(T0 + timedelta(hours=3))]
    assert disclosures(log)[0]["authorised"] is True


# --- as of ----------------------------------------------------------------------------------

SEALED = b"\x01" + b"\x00" * 40  # shape only: the fold keeps what it is given


def created(at, subject=S):
    return rec("AccountCreated", at, subject, gender=SEALED, last_name=SEALED,
               first_name=SEALED, email=SEALED, phone=None,
               postal_address={"line1": SEALED, "line2": None, "postal_code": SEALED,
                               "city": SEALED, "country": SEALED},
               over_15=True, notice_version="2026-01")


def test_as_of_before_the_account_existed_is_none(monkeypatch):
    monkeypatch.setattr("processors.rules.fold.sealed_version", lambda v: 1)
    c = created(T0)
    g = given_(T0 + timedelta(minutes=1), "marketing")
    d = rec("AccountDeleted", T0 + timedelta(days=1), requested_by="subject")
    log = [c, g, d]
    assert as_of(log, T0 - US) is None
    at_creation = as_of(log, T0)
    assert at_creation["status"] == "active" and at_creation["consents"] == {}
    mid = as_of(log, T0 + timedelta(hours=1))
    assert mid["consents"]["marketing"]["status"] == "granted"
    assert mid["personal"]
    assert as_of(log, T0 + timedelta(days=2))["status"] == "deleted"


def test_as_of_skips_what_the_processors_reject(monkeypatch):
    monkeypatch.setattr("processors.rules.fold.sealed_version", lambda v: 1)
    first = created(T0)
    second = created(T0 + timedelta(minutes=1))  # a second live account: dead-lettered
    view = as_of([first, second], T0 + timedelta(hours=1))
    assert view["created_at"] == "2026-03-03T14:00:00Z"
    assert view["counts"]["events"] == 1


# --- partitioning ---------------------------------------------------------------------------


class _Cluster:
    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self):
        return {"t"}

    def partitions_for_topic(self, topic):
        return set(range(self.n))

    def available_partitions_for_topic(self, topic):
        return set(range(self.n))


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True), st.integers(1, 12))
@settings(max_examples=200)
def test_partition_for_matches_the_producer(subject, n):
    from kafka.partitioner import DefaultPartitioner

    expected = DefaultPartitioner().partition("t", subject, subject.encode(), b"v", b"v",
                                              _Cluster(n))
    assert partition_for(subject, list(range(n))) == expected

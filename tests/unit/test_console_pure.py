"""The pure parts of the compliance console: the timeline as sentences, instants in UTC and
Paris time, the CSRF and login tokens, where a login may lead, and the login throttle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from registre.services.staff import BadStaffRequest, Throttle, check_request
from registre.web.console import csrf, dates, sentences
from registre.web.console.subject import PERSONAL

DESTROYED = {"destroyed": True, "destroyed_at": "2026-03-05T13:00:00Z", "category": "contact",
             "reason": "erasure requested on 2026-03-05T12:59:00Z"}


def event(kind: str, data: dict, source: str = "website-accounts",
          event_id: str = "e1") -> dict:
    return {"event_id": event_id, "type": kind, "occurred_at": "2026-03-03T14:00:00Z",
            "source": source, "duplicate": False, "data": data}


@pytest.mark.parametrize(("kind", "data", "expected"), [
    ("AccountCreated", {"notice_version": "2026-01"},
     "Account created by website-accounts (privacy notice 2026-01)"),
    ("ConsentWithdrawn", {"purposes": ["marketing"], "mechanism": "settings_page"},
     "Consent to marketing withdrawn in the account settings"),
    ("ConsentGiven", {"purposes": ["optimisation", "personalised_ads", "marketing"],
                      "mechanism": "banner_ok", "notice_version": "2026-01"},
     "Consent to optimisation, personalised ads and marketing given on the cookie banner"
     " (privacy notice 2026-01)"),
    ("ConsentRefused", {"purposes": ["third_party_cookies"], "mechanism": "api",
                        "notice_version": "v2"},
     "Consent to third-party cookies refused through the website's API (privacy notice v2)"),
    ("DataShared", {"recipient": "X", "recipient_kind": "third_party", "service": "other",
                    "categories": ["identity", "contact"], "country": "FR",
                    "basis": "authorisation"},
     "Data shared with X (identity, contact) on the basis of an authorisation, for other"
     " purposes, in FR"),
    ("DataShared", {"recipient": "desk.example", "recipient_kind": "processor",
                    "service": "assistance", "categories": ["contact"], "country": "IE",
                    "basis": "processor_contract"},
     "Data shared with processor desk.example (contact) on the basis of a processor"
     " contract, for assistance, in IE"),
    ("SharingAuthorised", {"recipient": "X", "categories": ["contact"], "purpose": "service"},
     "Sharing with X authorised (contact) for service"),
    ("SharingRevoked", {"recipient": "X"}, "Sharing with X revoked"),
    ("DocumentIssued", {"kind": "invoice", "document_ref": "FAC-1"},
     "Invoice FAC-1 issued by website-accounts"),
    ("AccountDeleted", {"requested_by": "subject"}, "Account deleted at the person's request"),
    ("ErasureRequested", {"requested_by": "operator"},
     "Erasure requested by an operator (right to erasure, art. 17)"),
    ("LegalHoldPlaced", {"case_ref": "LIT-1", "reason": "tax_audit", "categories": None},
     "Legal hold LIT-1 placed (tax audit) on every category"),
    ("LegalHoldReleased", {"case_ref": "LIT-1"}, "Legal hold LIT-1 released"),
    ("RequestReceived", {"request_id": "19d0ea45-ad3a", "kind": "access", "channel": "email",
                         "identity_verified": True},
     "Access request received by email (identity verified)"),
    ("KeysDestroyed", {"keys": [{"category": "connection", "period": "2026-03"},
                                {"category": "contact", "period": None}]},
     "Keys destroyed by the ledger: connection (2026-03), contact"),
    ("SomethingNew", {}, "SomethingNew recorded by website-accounts"),
    ("ConsentGiven", {"mechanism": "api"}, "ConsentGiven recorded by website-accounts"),
])
def test_each_event_reads_as_a_sentence(kind: str, data: dict, expected: str) -> None:
    assert sentences.sentence(event(kind, data)) == expected


def test_request_events_name_the_request_kind_from_its_receipt() -> None:
    rid = "19d0ea45-ad3a-4ad8-a36c-afa347c69ed1"
    timeline = {"events": [
        event("RequestReceived", {"request_id": rid, "kind": "erasure", "channel": "in_person",
                                  "identity_verified": False}, "registre-compliance", "a"),
        event("RequestExtended", {"request_id": rid, "months": 2, "reason": "many records"},
              "registre-compliance", "b"),
        event("RequestCompleted", {"request_id": rid, "outcome": "partially_fulfilled",
                                   "reason": "invoices kept 5 years"}, "registre-compliance",
              "c")]}
    said = [line.sentence for line in sentences.lines(timeline, {}, PERSONAL)]
    assert said == ["Erasure request received in person (identity not verified)",
                    "Erasure request 19d0ea45 extended by 2 month(s): many records",
                    "Erasure request 19d0ea45 completed: partially fulfilled (invoices kept 5"
                    " years)"]


def test_an_unauthorised_disclosure_is_flagged_with_why() -> None:
    shared = event("DataShared", {"recipient": "X", "recipient_kind": "third_party",
                                  "service": "other", "categories": ["contact"],
                                  "country": "FR", "basis": "authorisation"}, event_id="d1")
    fine = {**shared, "event_id": "d2"}
    flagged, kept = sentences.lines({"events": [shared, fine]},
                                    {"d1": "authorisation revoked at 2026-03-02T10:00:00Z"},
                                    PERSONAL)
    assert flagged.flag == "unauthorised" and flagged.sentence.endswith(" — unauthorised")
    assert flagged.flag_text == ("Unauthorised disclosure: authorisation revoked at "
                                 "2026-03-02T10:00:00Z")
    assert kept.flag is None and "unauthorised" not in kept.sentence


def test_personal_fields_show_their_value_or_when_and_why_they_were_destroyed() -> None:
    created = event("AccountCreated", {
        "gender": "female", "last_name": "Martin", "first_name": "Jeanne",
        "email": DESTROYED, "phone": None,
        "postal_address": {"line1": DESTROYED, "line2": None, "postal_code": DESTROYED,
                           "city": DESTROYED, "country": DESTROYED},
        "over_15": True, "notice_version": "2026-01"})
    (line,) = sentences.lines({"events": [created]}, {}, PERSONAL)
    shown = [(f.label, f.state, f.text) for f in line.fields]
    gone = ("destroyed on 2026-03-05 13:00:00 UTC (14:00:00 Paris) — erasure requested on "
            "2026-03-05T12:59:00Z")
    assert shown == [("gender", "value", "female"), ("last name", "value", "Martin"),
                     ("first name", "value", "Jeanne"),
                     ("email, address line 1, address postal code, address city, address "
                      "country", "destroyed", gone)]
    redacted = sentences.fields({"ip": {"redacted": True, "category": "connection"}},
                                PERSONAL["ConnectionRecorded"])
    assert redacted[0].state == "redacted" and "already erased" in redacted[0].text
    assert sentences.fields({"ip": None, "location": None}, PERSONAL["ConnectionRecorded"]) == []


def test_the_ledgers_own_events_and_duplicates_are_marked() -> None:
    done = event("ErasureCompleted", {"destroyed": [{"category": "identity", "period": None}],
                                      "retained": []}, "registre")
    again = {**event("SharingRevoked", {"recipient": "X"}), "duplicate": True}
    first, second = sentences.lines({"events": [done, again]}, {}, PERSONAL)
    assert first.ledger and first.sentence == ("Erasure completed, certificate issued by the"
                                               " ledger: destroyed identity; kept none")
    assert second.duplicate and second.sentence.endswith("(the same event id again: applied"
                                                         " once)")


def test_view_rows_are_ordered_as_an_address_reads() -> None:
    rows = sentences.rows({"postal_address": {"city": "Lyon", "country": "FR", "line1": "1 rue",
                                              "postal_code": "69001", "line2": None},
                           "email": "j@example.fr"})
    assert [(r.label, r.text) for r in rows] == [
        ("email", "j@example.fr"), ("address line 1", "1 rue"),
        ("address postal code", "69001"), ("address city", "Lyon"),
        ("address country", "FR")]


# --- dates ------------------------------------------------------------------------------------


def test_instants_in_utc_and_paris_time_across_daylight_saving() -> None:
    assert dates.both("2026-03-03T14:00:05Z") == "2026-03-03 14:00:05 UTC (15:00:05 Paris)"
    assert dates.both("2026-07-01T12:00:00+00:00") == "2026-07-01 12:00:00 UTC (14:00:00 Paris)"
    assert dates.both("2026-03-03T23:30:00Z") == \
        "2026-03-03 23:30:00 UTC (2026-03-04 00:30:00 Paris)"
    assert dates.pair("2026-03-03T14:00:05.123456Z") == ("2026-03-03 14:00:05 UTC",
                                                          "15:00:05 Paris")
    assert dates.both(None) == "-" and dates.day("2026-03-03T23:30:00Z") == "2026-03-03"


def test_a_form_instant_is_paris_time_unless_it_has_an_offset() -> None:
    assert dates.from_field("2026-03-03T15:00", "at") == datetime(2026, 3, 3, 14, tzinfo=UTC)
    assert dates.from_field("2026-07-01T15:00:30", "at") == \
        datetime(2026, 7, 1, 13, 0, 30, tzinfo=UTC)
    assert dates.from_field("2026-03-03T15:00:00+01:00", "at") == \
        datetime(2026, 3, 3, 14, tzinfo=UTC)
    assert dates.local_value("2026-03-03T14:00:00Z") == "2026-03-03 15:00:00"
    assert dates.from_field(" 2026-03-03 15:00:30 ", "at") == \
        datetime(2026, 3, 3, 14, 0, 30, tzinfo=UTC)
    with pytest.raises(dates.BadInstant, match="^at: expected a date"):
        dates.from_field("yesterday at noon", "at")
    with pytest.raises(dates.BadInstant):
        dates.from_field("2026-13-45T15:00", "at")


# --- tokens, next, throttle -------------------------------------------------------------------


def test_the_csrf_token_belongs_to_one_session() -> None:
    token = csrf.csrf_token("session-a")
    assert token == csrf.csrf_token("session-a") and token != csrf.csrf_token("session-b")
    assert csrf.csrf_ok("session-a", token)
    assert not csrf.csrf_ok("session-b", token)
    assert not csrf.csrf_ok("session-a", None) and not csrf.csrf_ok(None, token)
    assert not csrf.csrf_ok("session-a", token[:-1]) and not csrf.csrf_ok("session-a", "é")
    assert "session-a" not in token


def test_the_login_form_token_must_equal_its_cookie() -> None:
    value = csrf.new_login_token()
    assert csrf.login_ok(value, value)
    assert not csrf.login_ok(value, csrf.new_login_token())
    assert not csrf.login_ok(None, value) and not csrf.login_ok(value, "")


def test_a_post_from_another_site_is_refused_by_its_origin() -> None:
    assert csrf.same_origin(None, "http", "127.0.0.1:8737")
    assert csrf.same_origin("http://127.0.0.1:8737", "http", "127.0.0.1:8737")
    assert not csrf.same_origin("https://evil.example", "http", "127.0.0.1:8737")
    assert not csrf.same_origin("null", "http", "127.0.0.1:8737")


@pytest.mark.parametrize(("given", "expected"), [
    ("/console/subjects/acc-1?case=X", "/console/subjects/acc-1?case=X"),
    ("/console/", "/console/"), ("/console", "/console"),
    (None, "/console/"), ("", "/console/"),
    ("https://evil.example/console/", "/console/"), ("//evil.example/console/", "/console/"),
    ("/\\evil.example", "/console/"), ("/docs", "/console/"), ("/consolex", "/console/"),
    ("/console/../docs", "/console/"), ("javascript:alert(1)", "/console/"),
    ("/console/\r\nSet-Cookie: x=1", "/console/"),
])
def test_after_login_next_leads_only_to_the_console(given: str | None, expected: str) -> None:
    assert csrf.safe_next(given) == expected


def test_the_throttle_counts_failures_in_a_window_and_forgets_on_success() -> None:
    now = [1000.0]
    throttle = Throttle(limit=3, window=60, monotonic=lambda: now[0])
    for _ in range(3):
        assert not throttle.blocked("name:jeanne")
        throttle.failed("name:jeanne")
    assert throttle.blocked("name:jeanne") and not throttle.blocked("name:paul")
    now[0] += 61
    assert not throttle.blocked("name:jeanne")
    throttle.failed("name:jeanne")
    throttle.succeeded("name:jeanne")
    assert not throttle.blocked("name:jeanne")


def test_staff_names_roles_and_passwords_are_checked_without_echoing_the_password() -> None:
    check_request("dpo.jeanne", "compliance", "a long passphrase")
    for name, role, password in (("", "compliance", "a long passphrase"),
                                 ("jeanne@example.fr", "compliance", "a long passphrase"),
                                 ("jeanne", "root", "a long passphrase"),
                                 ("jeanne", "admin", "too-short"),
                                 ("jeanne", "admin", " padded passphrase ")):
        with pytest.raises(BadStaffRequest) as refused:
            check_request(name, role, password)
        assert password.strip() not in str(refused.value)


def test_requests_read_overdue_first_then_open_then_done() -> None:
    from registre.web.console.actions import ordered

    def req(rid: str, status: str, deadline: str, completed: str | None = None) -> dict:
        return {"request_id": rid, "status": status, "deadline": deadline,
                "completed_at": completed}

    listing = {"now": "2026-03-20T12:00:00Z", "requests": [
        req("done-old", "done", "2026-03-01T00:00:00Z", "2026-02-10T00:00:00Z"),
        req("open-late", "open", "2026-04-10T00:00:00Z"),
        req("overdue-recent", "overdue", "2026-03-19T00:00:00Z"),
        req("done-new", "done", "2026-03-01T00:00:00Z", "2026-02-20T00:00:00Z"),
        req("open-soon", "open", "2026-03-25T00:00:00Z"),
        req("overdue-old", "overdue", "2026-03-10T11:00:00Z")]}
    shown = ordered(listing)
    assert [r["request_id"] for r in shown] == ["overdue-old", "overdue-recent", "open-soon",
                                                "open-late", "done-new", "done-old"]
    assert [r["late_by"] for r in shown[:3]] == ["10 days", "1 day", None]
    assert dates.days_late("2026-03-20T11:00:00Z", "2026-03-20T12:00:00Z") == "less than a day"

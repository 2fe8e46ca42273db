"""Data-subject requests (GDPR art. 12(3)) as pure rules and in the customer-view fold: deadlines
from the log, one extension within the first month, one completion, statuses at an instant.
Records are made the real way (validated, Avro-encoded, decoded), as a processor reads them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.codec import Record, decode, encode
from events.validation import parse_event
from processors.rules.fold import Rejected, ViewFold
from processors.rules.policy import Policy
from processors.rules.requests import (
    RequestRefused,
    apply_request,
    complete,
    deadline,
    expected_match,
    extend,
    received,
    status_at,
)

POLICY = Policy()
SUBJECT = "acc-000042"
RID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def rec(kind: str, at: str, data: dict[str, Any], subject: str = SUBJECT) -> Record:
    event = parse_event({"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
                         "occurred_at": at, "source": "registre-compliance", "data": data})
    return decode(encode(event, {}))


def receive(at: str, kind: str = "access", rid: str = RID) -> Record:
    return rec("RequestReceived", at, {"request_id": rid, "kind": kind, "channel": "email",
                                       "identity_verified": True})


def extension(at: str, months: int = 2, rid: str = RID) -> Record:
    return rec("RequestExtended", at, {"request_id": rid, "months": months,
                                       "reason": "many records to gather"})


def completion(at: str, outcome: str = "fulfilled", rid: str = RID,
               reason: str | None = None) -> Record:
    return rec("RequestCompleted", at, {"request_id": rid, "outcome": outcome, "reason": reason})


def fold(records: list[Record], policy: Policy = POLICY) -> dict[str, Any]:
    apply, view = ViewFold(policy), None
    for r in records:
        view = apply(view, r)
    assert view is not None
    return view


def entry(records: list[Record], policy: Policy = POLICY) -> dict[str, Any]:
    return fold(records, policy)["requests"][RID]


# --- deadlines ------------------------------------------------------------------------------


@pytest.mark.parametrize("received_at, due", [
    ("2026-03-02T10:15:00+01:00", "2026-04-02T09:15:00+00:00"),
    ("2026-01-31T12:00:00Z", "2026-02-28T12:00:00+00:00"),  # the day is clamped
    ("2028-01-31T12:00:00Z", "2028-02-29T12:00:00+00:00"),  # leap year
    ("2026-12-31T23:30:00Z", "2027-01-31T23:30:00+00:00"),  # over the year
    ("2026-03-01T00:30:00+01:00", "2026-03-28T23:30:00+00:00"),  # in UTC: 28 Feb + 1 month
])
def test_a_request_is_due_one_calendar_month_after_receipt_in_utc(received_at, due):
    assert entry([receive(received_at)])["deadline"] == t(due).isoformat().replace(
        "+00:00", "Z")
    assert deadline(t(received_at), POLICY) == t(due)


def test_an_extension_counts_from_the_receipt_in_one_step():
    # 31 January + 1 month = 28 February, but + 3 months = 30 April (not 28 April)
    e = entry([receive("2026-01-31T12:00:00Z"), extension("2026-02-10T09:00:00Z", months=2)])
    assert e["deadline"] == "2026-04-30T12:00:00Z"
    assert e["extension"]["months"] == 2 and e["extension"]["reason"] == "many records to gather"
    e = entry([receive("2026-01-31T12:00:00Z"), extension("2026-02-10T09:00:00Z", months=1)])
    assert e["deadline"] == "2026-03-31T12:00:00Z"


def test_the_policy_gives_the_durations():
    longer = Policy(request_response_months=2, request_extension_max_months=3)
    e = entry([receive("2026-01-15T12:00:00Z"), extension("2026-03-01T00:00:00Z", months=3)],
              longer)
    assert e["deadline"] == "2026-06-15T12:00:00Z"
    with pytest.raises(Rejected, match="the policy allows no extension"):
        fold([receive("2026-01-15T12:00:00Z"), extension("2026-01-16T00:00:00Z", months=1)],
             Policy(request_extension_max_months=0))


# --- extension: once, within the first month, by 1 or 2 months --------------------------------


def test_an_extension_within_the_first_month_is_accepted_up_to_its_last_instant():
    e = entry([receive("2026-03-02T10:00:00Z"), extension("2026-04-02T09:59:59.999999Z")])
    assert e["deadline"] == "2026-06-02T10:00:00Z"


def test_an_extension_after_the_first_month_is_refused():
    with pytest.raises(Rejected, match=r"too late to extend .* before its first deadline"
                                       r" \(2026-04-02T10:00:00Z\)"):
        fold([receive("2026-03-02T10:00:00Z"), extension("2026-04-02T10:00:00Z")])


def test_a_second_extension_is_refused():
    with pytest.raises(Rejected, match="already extended once"):
        fold([receive("2026-03-02T10:00:00Z"), extension("2026-03-05T10:00:00Z", months=1),
              extension("2026-03-06T10:00:00Z", months=1)])


def test_more_than_the_policy_allows_is_refused():
    with pytest.raises(Rejected, match=r"data.months: an extension is 1 to 2 month\(s\)"):
        fold([receive("2026-03-02T10:00:00Z"), extension("2026-03-05T10:00:00Z", months=3)])


@pytest.mark.parametrize("event", [
    lambda: extension("2026-03-05T10:00:00Z"), lambda: completion("2026-03-05T10:00:00Z")])
def test_extending_or_completing_an_unknown_request_is_refused(event):
    with pytest.raises(Rejected, match=f"no request {RID} was received for this subject"):
        fold([receive("2026-03-02T10:00:00Z", rid=str(uuid.uuid4())), event()])


def test_a_request_of_another_subject_is_unknown():
    # the writer folds each record into its own subject's view: another subject has no request
    assert RID in fold([receive("2026-03-02T10:00:00Z", rid=RID)])["requests"]
    with pytest.raises(Rejected, match="no request"):
        fold([rec("RequestCompleted", "2026-03-05T10:00:00Z",
                  {"request_id": RID, "outcome": "fulfilled"}, subject="acc-999999")])


def test_events_dated_before_the_request_are_refused():
    with pytest.raises(Rejected, match="before the request's last event"):
        fold([receive("2026-03-02T10:00:00Z"), extension("2026-03-01T10:00:00Z")])
    with pytest.raises(Rejected, match="before the request's last event"):
        fold([receive("2026-03-02T10:00:00Z"), extension("2026-03-10T10:00:00Z"),
              completion("2026-03-09T10:00:00Z")])


def test_the_same_request_received_twice_is_refused():
    with pytest.raises(Rejected, match="already received"):
        fold([receive("2026-03-02T10:00:00Z"), receive("2026-03-03T10:00:00Z")])


# --- completion -----------------------------------------------------------------------------


def test_a_completion_records_outcome_and_reason_once():
    e = entry([receive("2026-03-02T10:00:00Z"),
               completion("2026-03-20T10:00:00+01:00", "refused", reason="manifestly unfounded")])
    assert (e["completed_at"], e["outcome"], e["reason"]) == (
        "2026-03-20T09:00:00Z", "refused", "manifestly unfounded")
    with pytest.raises(Rejected, match=r"already completed \(fulfilled"):
        fold([receive("2026-03-02T10:00:00Z"), completion("2026-03-20T10:00:00Z"),
              completion("2026-03-21T10:00:00Z")])
    with pytest.raises(Rejected, match="already completed"):
        fold([receive("2026-03-02T10:00:00Z"), completion("2026-03-20T10:00:00Z"),
              extension("2026-03-21T10:00:00Z")])


def test_a_late_completion_is_accepted_and_marked_late():
    e = entry([receive("2026-03-02T10:00:00Z"), completion("2026-05-01T10:00:00Z")])
    assert status_at(e, t("2026-06-01T00:00:00Z")) == ("done", True)
    on_time = entry([receive("2026-03-02T10:00:00Z"), completion("2026-04-02T09:59:59Z")])
    assert status_at(on_time, t("2026-06-01T00:00:00Z")) == ("done", False)


# --- status at an instant -------------------------------------------------------------------


def test_status_at_an_instant_is_judged_on_the_callers_clock():
    e = entry([receive("2026-03-02T10:00:00Z")])
    assert status_at(e, t("2026-03-02T10:00:00Z")) == ("open", False)
    assert status_at(e, t("2026-04-02T09:59:59+00:00")) == ("open", False)
    assert status_at(e, t("2026-04-02T12:00:00+02:00")) == ("overdue", True)  # = 10:00Z
    extended = entry([receive("2026-03-02T10:00:00Z"), extension("2026-03-30T10:00:00Z", 1)])
    assert status_at(extended, t("2026-04-20T00:00:00Z")) == ("open", False)
    assert status_at(extended, t("2026-05-02T10:00:00Z")) == ("overdue", True)
    with pytest.raises(ValueError, match="timezone-aware"):
        status_at(e, datetime(2026, 4, 1))  # noqa: DTZ001 - a naive instant names no instant


def test_what_a_completed_request_must_be_matched_with():
    def done(kind: str, outcome: str) -> dict[str, Any]:
        return entry([receive("2026-03-02T10:00:00Z", kind=kind),
                      completion("2026-03-03T10:00:00Z", outcome)])

    assert expected_match(done("erasure", "fulfilled")) == "ErasureRequested"
    assert expected_match(done("access", "fulfilled")) == "export"
    assert expected_match(done("portability", "fulfilled")) == "export"
    assert expected_match(done("erasure", "refused")) is None
    assert expected_match(done("access", "partially_fulfilled")) is None
    assert expected_match(done("rectification", "fulfilled")) is None


# --- the pure functions themselves ------------------------------------------------------------


def test_apply_request_never_changes_what_it_is_given():
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    first = apply_request({}, "RequestReceived", {"request_id": RID, "kind": "erasure",
                                                  "channel": "post",
                                                  "identity_verified": False},
                          at, "e1", POLICY)
    kept = dict(first[RID])
    after = apply_request(first, "RequestCompleted", {"request_id": RID, "outcome": "fulfilled"},
                          at + timedelta(days=3), "e2", POLICY)
    assert first[RID] == kept and after[RID]["completed_event_id"] == "e2"
    assert after[RID]["received_event_id"] == "e1"


def test_the_rules_raise_request_refused_for_the_service_to_check_before_publishing():
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    e = received(RID, "access", "email", True, at, "e1", POLICY)
    with pytest.raises(RequestRefused, match="too late"):
        extend(e, RID, 1, "why", at + timedelta(days=40), "e2", POLICY)
    with pytest.raises(RequestRefused, match="no request"):
        complete(None, RID, "fulfilled", None, at, "e2")
    assert complete(e, RID, "fulfilled", None, at, "e2")["outcome"] == "fulfilled"


def test_a_refused_request_event_leaves_the_view_as_it_was():
    apply = ViewFold(POLICY)
    view = apply(None, receive("2026-03-02T10:00:00Z"))
    before = {**view, "requests": dict(view["requests"])}
    with pytest.raises(Rejected):
        apply(view, extension("2026-05-01T00:00:00Z"))
    assert view == before and view["counts"]["events"] == 1


def test_requests_need_no_account_and_survive_the_end_of_the_account():
    view = fold([receive("2026-03-02T10:00:00Z", kind="erasure"),
                 rec("ErasureRequested", "2026-03-03T10:00:00Z", {"requested_by": "subject"}),
                 completion("2026-03-04T10:00:00Z")])
    assert view["status"] == "erased" and view["has_account"] is False
    assert view["requests"][RID]["outcome"] == "fulfilled"


def test_a_view_stored_before_requests_existed_takes_a_request():
    apply = ViewFold(POLICY)
    old = apply(None, rec("ErasureRequested", "2026-03-01T10:00:00Z",
                          {"requested_by": "subject"}))
    del old["requests"]
    assert RID in apply(old, receive("2026-03-02T10:00:00Z"))["requests"]

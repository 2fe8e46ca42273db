"""The customer view as a pure fold, over scripted sequences per subject (no broker, no
database). Records are made the real way: validated, sealed with data keys, Avro-encoded and
decoded again, so the fold sees exactly what a processor reads from the log."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.catalogue import PiiField, load_catalogue
from events.codec import Record, decode, encode, key_refs, open_field
from events.crypto import new_data_key
from events.keys import KeyRef
from events.model import format_instant
from events.validation import parse_event
from processors.rules.fold import (
    Rejected,
    SealedRef,
    ViewFold,
    connection_refs,
    empty_view,
    personal_refs,
)
from processors.rules.policy import Policy
from registre.services.views import consent_status as status_under

CAT = load_catalogue()
POLICY = Policy()
apply = ViewFold(POLICY, CAT)


def consent_status(entry: dict[str, Any], now: datetime) -> str:
    return status_under(entry, now, POLICY.consent_validity_months)

SUBJECT = "acc-000042"
KEYS: dict[KeyRef, tuple[int, bytes]] = {}

ADDRESS = {"line1": "17 rue des Canaris-Oubliés", "line2": "Bâtiment B, 3e étage",
           "postal_code": "69400", "city": "Villefranche-sur-Saône", "country": "FR"}
ACCOUNT = {"gender": "female", "last_name": "Canarivaux", "first_name": "Zéphyrine",
           "email": "zephyrine.canarivaux@exemple-canari.fr", "phone": "+33 6 71 42 93 58",
           "postal_address": ADDRESS, "over_15": True, "notice_version": "2026-02"}


def rec(kind: str, at: str, data: dict[str, Any], subject: str = SUBJECT,
        event_id: str | None = None) -> Record:
    """Validate, seal (keys of this module), encode and decode one event."""
    event = parse_event({"event_id": event_id or str(uuid.uuid4()), "type": kind,
                         "subject_id": subject, "occurred_at": at,
                         "source": "registre" if CAT.types[kind].origin == "registre"
                         else "website-test", "data": data}, allow_registre=True)
    for ref in key_refs(event):
        KEYS.setdefault(ref, (1, new_data_key()))
    return decode(encode(event, KEYS))


def fold(records: list[Record], view: dict[str, Any] | None = None) -> dict[str, Any]:
    for r in records:
        view = apply(view, r)
    return view


def field_of(ref: SealedRef) -> PiiField:
    return next(f for f in CAT.types[ref.event_type].pii if f.dotted == ref.dotted)


def reveal(refs: dict[str, SealedRef], subject: str = SUBJECT) -> dict[str, Any]:
    """{path: sealed ref} of a view -> {path: plain value}, decrypted with this module's keys."""
    def lookup(ref: KeyRef, version: int) -> bytes | None:
        found = KEYS.get(ref)
        return found[1] if found and found[0] == version else None

    return {path: open_field(r.event_type, r.event_id, subject, datetime.fromisoformat(r.at),
                             field_of(r), base64.b64decode(r.value), lookup)
            for path, r in refs.items()}


def created(at: str = "2026-03-01T09:30:00+01:00", **changes: Any) -> Record:
    return rec("AccountCreated", at, {**ACCOUNT, **changes})


def consent(kind: str, at: str, purposes: list[str], **extra: Any) -> Record:
    data: dict[str, Any] = {"purposes": purposes, "mechanism": "banner_ok"}
    if kind in ("ConsentGiven", "ConsentRefused"):
        data["notice_version"] = "2026-02"
    data.update(extra)
    return rec(kind, at, data)


# --- account, identity, contact ---------------------------------------------------------------


def test_account_created_gives_an_active_view_with_identity_and_contact():
    r = created()
    view = apply(None, r)
    assert view["subject_id"] == SUBJECT
    assert view["status"] == "active" and view["has_account"] is True
    assert view["created_at"] == "2026-03-01T08:30:00Z"  # stored in UTC
    assert view["deleted_at"] is None and view["erased_at"] is None
    assert reveal(personal_refs(view)) == {
        "gender": "female", "last_name": "Canarivaux", "first_name": "Zéphyrine",
        "email": "zephyrine.canarivaux@exemple-canari.fr", "phone": "+33 6 71 42 93 58",
        "postal_address.line1": ADDRESS["line1"], "postal_address.line2": ADDRESS["line2"],
        "postal_address.postal_code": "69400", "postal_address.city": ADDRESS["city"],
        "postal_address.country": "FR",
    }
    categories = {path: field_of(ref).category for path, ref in personal_refs(view).items()}
    assert {p for p, c in categories.items() if c == "identity"} == {
        "gender", "last_name", "first_name"}
    assert all(c == "contact" for p, c in categories.items()
               if p not in ("gender", "last_name", "first_name"))
    assert all(ref.event_id == r.event_id and ref.event_type == "AccountCreated"
               for ref in personal_refs(view).values())
    assert view["last_connection"] is None
    assert view["consents"] == {} and view["authorisations"] == {}
    assert view["holds"] == {} and view["documents"] == []
    assert view["counts"] == {"events": 1, "connections": 0, "disclosures": 0,
                              "unauthorised_disclosures": 0, "documents": 0}
    assert view["last_event_at"] == "2026-03-01T08:30:00Z"


def test_the_view_holds_no_personal_value_in_clear():
    view = fold([created(), rec("ConnectionRecorded", "2026-03-01T09:31:05+01:00", {
        "ip": "203.0.113.77", "user_agent": "CanariBrowser/7.3", "cookie_id": "ck-canari-9f2e",
        "location": {"latitude": 45.98917, "longitude": 4.71889, "city": "Villefranche-Canari",
                     "country": "FR"}})])
    text = json.dumps(view, ensure_ascii=False)  # what goes into the JSONB column
    for clear in ("Canarivaux", "Zéphyrine", "exemple-canari.fr", "71 42 93 58", "Canaris",
                  "69400", "203.0.113.77", "CanariBrowser", "ck-canari", "Villefranche",
                  "45.98917", "4.71889"):
        assert clear not in text


def test_account_created_on_a_live_account_is_rejected():
    view = apply(None, created())
    with pytest.raises(Rejected, match="live account"):
        apply(view, created(at="2026-03-02T10:00:00+01:00", first_name="Autre"))


def test_account_created_after_the_account_ended_is_rejected():
    # domain.md, "Time and trust": a subject whose account ended cannot open a new account
    # under the same subject_id (issue 11 replaced "opens a new account")
    for end in (rec("AccountDeleted", "2026-03-05T10:00:00Z", {"requested_by": "subject"}),
                rec("ErasureRequested", "2026-03-05T10:00:00Z", {"requested_by": "subject"})):
        view = fold([created(), end])
        with pytest.raises(Rejected, match="account of this subject ended"):
            apply(view, created(at="2026-04-01T10:00:00Z", first_name="Zoé"))
        assert view["status"] in ("deleted", "erased")


def test_facts_retention_counts_from_are_dated_no_later_than_their_arrival():
    arrived = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    view = apply(None, created())
    for kind, data in (("DocumentIssued", {"kind": "invoice", "document_ref": "F-1"}),
                       ("LegalHoldPlaced", {"case_ref": "LIT-1", "reason": "dispute"}),
                       ("AccountDeleted", {"requested_by": "subject"})):
        view = apply(view, rec(kind, "2026-03-05T10:03:00Z", data), arrived)
    assert view["deleted_at"] == "2026-03-05T10:00:00Z"
    assert view["documents"][0]["at"] == "2026-03-05T10:00:00Z"
    assert view["holds"]["LIT-1"]["since"] == "2026-03-05T10:00:00Z"
    earlier = apply(None, rec("ErasureRequested", "2026-03-05T09:00:00Z",
                              {"requested_by": "subject"}), arrived)
    assert earlier["erased_at"] == "2026-03-05T09:00:00Z"  # an earlier instant stays


def test_account_updated_rectifies_only_the_given_fields():
    view = fold([created(), rec("AccountUpdated", "2026-04-10T14:12:00+02:00",
                                {"email": "z.canarivaux@nouvelle-adresse-canari.fr"})])
    plain = reveal(personal_refs(view))
    assert plain["email"] == "z.canarivaux@nouvelle-adresse-canari.fr"
    assert plain["last_name"] == "Canarivaux" and plain["phone"] == "+33 6 71 42 93 58"
    assert plain["postal_address.city"] == ADDRESS["city"]
    assert personal_refs(view)["email"].event_type == "AccountUpdated"
    assert personal_refs(view)["last_name"].event_type == "AccountCreated"


def test_account_updated_replaces_the_whole_postal_address():
    new = {"line1": "92 avenue du Général-Canari", "postal_code": "33000",
           "city": "Bordeaux-Canari", "country": "FR"}  # no line2: the old one must go
    view = fold([created(), rec("AccountUpdated", "2026-08-01T07:45:30Z",
                                {"postal_address": new, "phone": "+33 7 58 21 64 90"})])
    plain = reveal(personal_refs(view))
    address = {k.split(".", 1)[1]: v for k, v in plain.items() if k.startswith("postal_address.")}
    assert address == new
    assert plain["phone"] == "+33 7 58 21 64 90"
    assert plain["email"] == ACCOUNT["email"]


def test_a_view_names_each_source_event_once_and_forgets_those_it_no_longer_holds():
    first, second = (rec("AccountUpdated", f"2026-04-1{n}T12:00:00Z",
                         {"email": f"z{n}@exemple-canari.fr"}) for n in (1, 2))
    account = created()
    view = fold([account, first])
    assert set(view["sources"]) == {account.event_id, first.event_id}
    assert view["sources"][first.event_id] == ["AccountUpdated", "2026-04-11T12:00:00Z"]
    view = apply(view, second)  # the first update's only field is replaced
    assert set(view["sources"]) == {account.event_id, second.event_id}
    assert view["personal"]["email"] == [second.event_id, view["personal"]["email"][1]]
    assert reveal(personal_refs(view))["email"] == "z2@exemple-canari.fr"


def _legacy(refs: dict[str, SealedRef]) -> dict[str, dict[str, Any]]:
    """Leaves as views folded before issue 15 kept them: each a dict of its own context."""
    return {path: {"e": r.event_id, "t": r.event_type, "at": r.at, "p": r.dotted,
                   "c": field_of(r).category, "v": r.value} for path, r in refs.items()}


def test_a_view_folded_with_the_former_leaves_still_reads_and_folds():
    connection = rec("ConnectionRecorded", "2026-03-02T20:00:00Z",
                     {"ip": "203.0.113.9", "cookie_id": "ck-legacy-canari"})
    view = fold([created(), connection])
    legacy = {**view, "personal": _legacy(personal_refs(view)),
              "last_connection": {**view["last_connection"],
                                  "fields": _legacy(connection_refs(view))}}
    del legacy["sources"]
    assert reveal(personal_refs(legacy)) == reveal(personal_refs(view))
    assert reveal(connection_refs(legacy)) == reveal(connection_refs(view))
    update = rec("AccountUpdated", "2026-04-10T12:00:00Z", {"email": "z@nouvelle-canari.fr"})
    after = apply(legacy, update)
    plain = reveal(personal_refs(after))
    assert plain["email"] == "z@nouvelle-canari.fr" and plain["last_name"] == "Canarivaux"
    assert after["sources"] == {update.event_id: ["AccountUpdated", "2026-04-10T12:00:00Z"]}


@pytest.mark.parametrize("before", [[], ["AccountDeleted"], ["ErasureRequested"]])
def test_account_updated_without_a_live_account_is_rejected(before):
    records = [created()] if before else []
    records += [rec(k, "2026-03-05T10:00:00Z", {"requested_by": "subject"}) for k in before]
    view = fold(records)
    with pytest.raises(Rejected, match="no live account"):
        apply(view, rec("AccountUpdated", "2026-03-06T10:00:00Z", {"first_name": "Nouveau"}))


def test_a_personal_field_in_clear_is_rejected():
    good = rec("AccountUpdated", "2026-04-10T12:00:00Z", {"email": "a.b@exemple-canari.fr"})
    clear = Record(good.type, good.event_id, good.subject_id, good.occurred_at, good.source,
                   {**good.data, "email": b"a.b@exemple-canari.fr"})
    with pytest.raises(Rejected, match="not sealed"):
        apply(apply(None, created()), clear)


# --- connections ------------------------------------------------------------------------------


def test_last_connection_is_the_latest_one_with_its_fields():
    first = rec("ConnectionRecorded", "2026-03-01T09:31:05+01:00",
                {"ip": "203.0.113.77", "cookie_id": "ck-9f2e71c0d4a8-canari",
                 "location": {"latitude": 45.98917, "longitude": 4.71889,
                              "city": "Villefranche-Canari", "country": "FR"},
                 "user_agent": "Mozilla/5.0 (X11; Linux x86_64) CanariBrowser/7.3"})
    second = rec("ConnectionRecorded", "2026-03-02T20:00:00+01:00",
                 {"ip": "2001:db8:85a3::8a2e:370:7334",
                  "location": {"latitude": -21.11444, "longitude": 55.5325}})
    view = fold([created(), first])
    assert view["last_connection"]["event_id"] == first.event_id
    assert reveal(connection_refs(view)) == {
        "ip": "203.0.113.77", "cookie_id": "ck-9f2e71c0d4a8-canari",
        "location.latitude": 45.98917, "location.longitude": 4.71889,
        "location.city": "Villefranche-Canari", "location.country": "FR",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) CanariBrowser/7.3"}
    view = apply(view, second)
    assert view["last_connection"]["at"] == "2026-03-02T19:00:00Z"
    assert view["last_connection"]["event_id"] == second.event_id
    assert reveal(connection_refs(view)) == {
        "ip": "2001:db8:85a3::8a2e:370:7334", "location.latitude": -21.11444,
        "location.longitude": 55.5325}
    refs = connection_refs(view)
    assert field_of(refs["ip"]).category == "connection"
    assert field_of(refs["location.latitude"]).category == "location"
    assert view["counts"]["connections"] == 2
    # a connection does not touch identity or contact
    assert reveal(personal_refs(view))["email"] == ACCOUNT["email"]


def test_a_visitor_without_account_has_a_view_without_identity():
    visit = rec("ConnectionRecorded", "2026-05-17T21:04:33.5+02:00",
                {"ip": "198.51.100.23", "cookie_id": "vis-cookie-5e1d-canari"},
                subject="vis-c0ffee42")
    view = apply(None, visit)
    assert view["subject_id"] == "vis-c0ffee42"
    assert view["status"] == "active" and view["has_account"] is False
    assert view["personal"] == {}
    assert view["last_connection"]["at"] == "2026-05-17T19:04:33.500000Z"


# --- consents ---------------------------------------------------------------------------------


def test_consent_granted_then_withdrawn_per_purpose():
    given = consent("ConsentGiven", "2026-03-01T09:30:10+01:00",
                    ["optimisation", "personalised_ads"])
    withdrawn = consent("ConsentWithdrawn", "2026-04-02T12:00:00+02:00", ["personalised_ads"],
                        mechanism="settings_page")
    view = fold([given])
    assert view["consents"]["optimisation"] == {
        "status": "granted", "at": "2026-03-01T08:30:10Z", "event_id": given.event_id,
        "notice_version": "2026-02", "mechanism": "banner_ok",
        "expires_at": "2027-04-01T08:30:10Z"}  # valid 13 months
    view = apply(view, withdrawn)
    assert view["consents"]["optimisation"]["status"] == "granted"
    assert view["consents"]["personalised_ads"] == {
        "status": "withdrawn", "at": "2026-04-02T10:00:00Z", "event_id": withdrawn.event_id,
        "notice_version": None, "mechanism": "settings_page", "expires_at": None}
    assert set(view["consents"]) == {"optimisation", "personalised_ads"}  # others: never asked


def test_consent_refused_then_granted():
    refused = consent("ConsentRefused", "2026-03-01T09:30:10+01:00", ["marketing"])
    view = apply(None, refused)
    assert view["consents"]["marketing"]["status"] == "refused"
    assert view["consents"]["marketing"]["expires_at"] == "2027-04-01T08:30:10Z"
    given = consent("ConsentGiven", "2026-06-01T10:00:00Z", ["marketing"],
                    mechanism="settings_page", notice_version="2026-05")
    view = apply(view, given)
    assert view["consents"]["marketing"] == {
        "status": "granted", "at": "2026-06-01T10:00:00Z", "event_id": given.event_id,
        "notice_version": "2026-05", "mechanism": "settings_page",
        "expires_at": "2027-07-01T10:00:00Z"}


def test_consent_expired_applies_to_the_choice_it_names_only():
    old = consent("ConsentGiven", "2026-03-01T09:30:10+01:00", ["optimisation", "marketing"])
    newer = consent("ConsentGiven", "2027-01-15T10:00:00Z", ["marketing"])
    expired = rec("ConsentExpired", "2027-04-01T09:30:10+02:00",
                  {"purposes": ["optimisation", "marketing"], "choice_event_id": old.event_id})
    view = fold([old, newer, expired])
    assert view["consents"]["optimisation"]["status"] == "expired"
    assert view["consents"]["optimisation"]["choice_event_id"] == old.event_id
    assert view["consents"]["optimisation"]["event_id"] == expired.event_id
    assert view["consents"]["optimisation"]["expires_at"] is None
    # marketing was chosen again after the expired choice: the newer choice stands
    assert view["consents"]["marketing"]["status"] == "granted"
    assert view["consents"]["marketing"]["event_id"] == newer.event_id
    assert view["counts"]["events"] == 3


def test_consent_expired_of_a_purpose_never_asked_is_ignored():
    expired = rec("ConsentExpired", "2027-04-01T09:30:10+02:00",
                  {"purposes": ["marketing"], "choice_event_id": str(uuid.uuid4())})
    assert apply(None, expired)["consents"] == {}


def test_consent_status_expires_at_read_time():
    given = consent("ConsentGiven", "2026-03-01T09:30:10+01:00", ["optimisation"])
    refused = consent("ConsentRefused", "2026-03-01T09:30:10+01:00", ["marketing"])
    withdrawn = consent("ConsentWithdrawn", "2026-03-02T09:00:00Z", ["third_party_cookies"])
    view = fold([given, refused, withdrawn])
    before = datetime(2027, 4, 1, 8, 30, 9, tzinfo=UTC)
    at = datetime(2027, 4, 1, 8, 30, 10, tzinfo=UTC)
    consents = view["consents"]
    assert consent_status(consents["optimisation"], before) == "granted"
    assert consent_status(consents["optimisation"], at) == "expired"
    assert consent_status(consents["marketing"], before) == "refused"
    assert consent_status(consents["marketing"], at) == "expired"
    far = datetime(2030, 1, 1, tzinfo=UTC)
    assert consent_status(consents["third_party_cookies"], far) == "withdrawn"
    assert consent_status(consents["optimisation"], datetime(2026, 3, 1, 8, 30, 10,
                                                              tzinfo=UTC)) == "granted"


# --- sharing ----------------------------------------------------------------------------------


PARTNER = "voyages-partenaire.example"


def authorised(recipient: str = PARTNER, categories: list[str] | None = None,
               at: str = "2026-03-05T10:00:00+01:00") -> Record:
    return rec("SharingAuthorised", at, {"recipient": recipient,
                                         "categories": categories or ["identity", "contact"],
                                         "purpose": "service"})


def shared(recipient: str = PARTNER, kind: str = "third_party",
           categories: list[str] | None = None, at: str = "2026-03-05T16:25:00+01:00",
           basis: str = "authorisation") -> Record:
    return rec("DataShared", at, {"recipient": recipient, "recipient_kind": kind,
                                  "service": "account_creation",
                                  "categories": categories or ["identity", "contact"],
                                  "country": "FR", "basis": basis})


def test_authorisations_added_and_revoked():
    auth = authorised(categories=["contact", "identity"])
    other = authorised("hotel-partenaire.example", ["contact"])
    view = fold([created(), auth, other])
    assert view["authorisations"] == {
        PARTNER: {"categories": ["contact", "identity"], "purpose": "service",
                  "since": "2026-03-05T09:00:00Z", "event_id": auth.event_id},
        "hotel-partenaire.example": {"categories": ["contact"], "purpose": "service",
                                     "since": "2026-03-05T09:00:00Z",
                                     "event_id": other.event_id},
    }
    view = apply(view, rec("SharingRevoked", "2026-03-06T10:00:00Z", {"recipient": PARTNER}))
    assert list(view["authorisations"]) == ["hotel-partenaire.example"]
    # revoking what is not authorised changes nothing but the event count
    again = apply(view, rec("SharingRevoked", "2026-03-07T10:00:00Z", {"recipient": PARTNER}))
    assert again["authorisations"] == view["authorisations"]


def test_disclosures_are_counted_and_unauthorised_ones_flagged():
    view = fold([
        created(), authorised(),
        shared(),                                             # covered: authorised
        shared("support.example", "processor", basis="processor_contract"),  # processor
        shared(categories=["identity", "connection"]),        # a category not covered
        rec("SharingRevoked", "2026-03-06T10:00:00Z", {"recipient": PARTNER}),
        shared(categories=["contact"], at="2026-03-07T10:00:00Z"),  # after revocation
    ])
    assert view["counts"]["disclosures"] == 4
    assert view["counts"]["unauthorised_disclosures"] == 2


def test_a_legal_obligation_or_a_processor_contract_needs_no_authorisation():
    view = fold([
        created(),
        shared("administration-fiscale.example", categories=["identity"],
               basis="legal_obligation"),
        shared("centre-appels.example", "processor", ["identity", "contact", "connection"],
               basis="processor_contract"),
    ])
    assert view["counts"]["disclosures"] == 2
    assert view["counts"]["unauthorised_disclosures"] == 0


def test_an_authorisation_covers_its_recipient_only():
    view = fold([created(), authorised(PARTNER, ["identity", "contact"]),
                 shared("autre-site.example", categories=["contact"])])
    assert view["counts"]["disclosures"] == 1
    assert view["counts"]["unauthorised_disclosures"] == 1


# --- documents, holds, deletion, erasure ------------------------------------------------------


def test_documents_are_listed():
    quote = rec("DocumentIssued", "2026-03-10T10:00:00Z",
                {"kind": "quote", "document_ref": "DEV-2026-0042"})
    invoice = rec("DocumentIssued", "2026-03-20T10:00:00Z",
                  {"kind": "invoice", "document_ref": "FAC-2026-0042"})
    view = fold([created(), quote, invoice])
    assert view["documents"] == [
        {"kind": "quote", "document_ref": "DEV-2026-0042", "at": "2026-03-10T10:00:00Z",
         "event_id": quote.event_id},
        {"kind": "invoice", "document_ref": "FAC-2026-0042", "at": "2026-03-20T10:00:00Z",
         "event_id": invoice.event_id},
    ]
    assert view["counts"]["documents"] == 2


def test_legal_holds_placed_and_released():
    dispute = rec("LegalHoldPlaced", "2026-10-01T09:00:00+02:00",
                  {"case_ref": "LIT-2026-014", "reason": "dispute",
                   "categories": ["identity", "contact"]})
    audit = rec("LegalHoldPlaced", "2026-12-10T14:00:00+01:00",
                {"case_ref": "FISC-2026-203", "reason": "tax_audit"})
    view = fold([created(), dispute, audit])
    assert view["holds"] == {
        "LIT-2026-014": {"reason": "dispute", "categories": ["identity", "contact"],
                         "since": "2026-10-01T07:00:00Z", "event_id": dispute.event_id},
        "FISC-2026-203": {"reason": "tax_audit", "categories": None,  # None: every category
                          "since": "2026-12-10T13:00:00Z", "event_id": audit.event_id},
    }
    view = apply(view, rec("LegalHoldReleased", "2027-01-10T10:00:00Z",
                           {"case_ref": "LIT-2026-014"}))
    assert list(view["holds"]) == ["FISC-2026-203"]


def test_account_deleted_then_erased():
    view = fold([created(), rec("AccountDeleted", "2026-05-01T10:00:00+02:00",
                                {"requested_by": "subject"})])
    assert view["status"] == "deleted" and view["deleted_at"] == "2026-05-01T08:00:00Z"
    assert view["has_account"] is True
    view = apply(view, rec("ErasureRequested", "2026-05-02T10:00:00Z",
                           {"requested_by": "subject"}))
    assert view["status"] == "erased" and view["erased_at"] == "2026-05-02T10:00:00Z"
    assert view["deleted_at"] == "2026-05-01T08:00:00Z"
    # a deletion after the erasure does not bring the subject back to "deleted"
    view = apply(view, rec("AccountDeleted", "2026-05-03T10:00:00Z",
                           {"requested_by": "operator"}))
    assert view["status"] == "erased" and view["deleted_at"] == "2026-05-01T08:00:00Z"


def test_a_visitor_without_account_can_be_erased():
    visit = rec("ConnectionRecorded", "2026-05-17T21:04:33+02:00", {"ip": "198.51.100.23"},
                subject="vis-c0ffee42")
    erased = rec("ErasureRequested", "2026-05-18T10:00:00Z", {"requested_by": "subject"},
                 subject="vis-c0ffee42")
    view = fold([visit, erased])
    assert view["status"] == "erased" and view["erased_at"] == "2026-05-18T10:00:00Z"
    assert view["has_account"] is False


# --- the fold itself --------------------------------------------------------------------------


def test_the_fold_is_pure_and_json_able():
    base = fold([created(), authorised(), consent("ConsentGiven", "2026-03-01T10:00:00Z",
                                                  ["marketing"])])
    frozen = copy.deepcopy(base)
    after = apply(base, shared())
    after = apply(after, rec("SharingRevoked", "2026-03-06T10:00:00Z", {"recipient": PARTNER}))
    assert base == frozen  # the input view is never modified
    assert after is not base
    assert json.loads(json.dumps(after)) == after
    assert apply(None, created())["subject_id"] == SUBJECT
    assert set(empty_view("x")) == set(after)


def test_every_event_counts_and_last_event_at_is_the_latest_instant():
    view = fold([
        created("2026-03-01T09:30:00.250+01:00"),
        consent("ConsentGiven", "2026-03-01T09:30:00+01:00", ["marketing"]),  # earlier instant
        consent("ConsentRefused", "2026-03-01T09:30:00.5+01:00", ["optimisation"]),
    ])
    assert view["counts"]["events"] == 3
    assert view["last_event_at"] == "2026-03-01T08:30:00.500000Z"


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),  # noqa: DTZ001 - hypothesis takes naive bounds
       st.integers(min_value=-14 * 60, max_value=14 * 60), st.booleans())
def test_an_instant_is_formatted_as_rfc_3339_in_utc(naive: datetime, minutes: int,
                                                     whole: bool) -> None:
    """The hand-written formatting of the views' instants says what ``isoformat`` says: in
    UTC, with a Z, microseconds only when there are some, whatever the offset given."""
    at = naive.replace(microsecond=0 if whole else naive.microsecond,
                       tzinfo=timezone(timedelta(minutes=minutes)))
    if not datetime(1, 1, 1, tzinfo=UTC) < at < datetime(9999, 12, 31, tzinfo=UTC):
        return
    utc = at.astimezone(UTC)
    expected = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
    assert format_instant(at) == expected.replace("+00:00", "Z")
    assert datetime.fromisoformat(format_instant(at)) == at

"""A subject's timeline as sentences a person reads: "Consent to marketing withdrawn in the
account settings", "Data shared with X (identity, contact) on the basis of an authorisation —
unauthorised", each personal field with its value or "destroyed on ... (why)".

Pure: it takes the documents of the compliance desk (the timeline, and which disclosures were
unauthorised) and the personal fields of each event type, and returns plain data for a page.
No clock, no I/O; dates are written by `dates`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from registre.web.console import dates

Doc = Mapping[str, Any]

MECHANISMS = {"banner_ok": "on the cookie banner", "settings_page": "in the account settings",
              "api": "through the website's API"}
BASES = {"authorisation": "an authorisation", "processor_contract": "a processor contract",
         "legal_obligation": "a legal obligation"}
CHANNELS = {"email": "by email", "post": "by post", "web_form": "through the web form",
            "phone": "by phone", "in_person": "in person"}
WORDS = {"personalised_ads": "personalised ads", "third_party_cookies": "third-party cookies",
         "tax_audit": "tax audit", "court_order": "court order", "web_form": "web form",
         "partially_fulfilled": "partially fulfilled", "in_person": "in person",
         "ip": "IP address", "cookie_id": "cookie id", "user_agent": "browser (user agent)",
         "postal_address": "address", "line1": "line 1", "line2": "line 2",
         "postal_code": "postal code", "last_name": "last name", "first_name": "first name",
         "at": "when"}
SERVICES = {"other": "other purposes"}


def word(symbol: str | None) -> str:
    """A schema symbol as words: ``personalised_ads`` -> ``personalised ads``."""
    if symbol is None:
        return "-"
    return WORDS.get(symbol, symbol.replace("_", " "))


def join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def label(dotted: str) -> str:
    """A field path as words: ``postal_address.postal_code`` -> ``address postal code``."""
    return " ".join(word(part) for part in dotted.split("."))


@dataclass(frozen=True)
class Field:
    """One personal field of an event: ``state`` is value, destroyed, redacted or unreadable."""

    label: str
    state: str
    text: str


@dataclass(frozen=True)
class Line:
    """One event of the timeline, as a page shows it."""

    event_id: str
    type: str
    at: str
    sentence: str
    flag: str | None = None
    flag_text: str | None = None
    fields: list[Field] = field(default_factory=list)
    ledger: bool = False
    duplicate: bool = False


def shown(value: Any) -> Field | None:
    """A personal leaf of the timeline as a page shows it (None when absent from the event)."""
    if value is None:
        return None
    if isinstance(value, Mapping) and value.get("destroyed"):
        return Field("", "destroyed", f"destroyed on {dates.both(value.get('destroyed_at'))}"
                                      f" — {value.get('reason') or 'no reason recorded'}")
    if isinstance(value, Mapping) and value.get("redacted"):
        return Field("", "redacted", "not recorded: the person was already erased when this "
                                     "arrived")
    if isinstance(value, Mapping) and value.get("unreadable"):
        return Field("", "unreadable", "unreadable: no key for it")
    if isinstance(value, bool):
        return Field("", "value", "yes" if value else "no")
    return Field("", "value", str(value))


def _leaf(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(data, Mapping) and "destroyed" not in data and "redacted" not in data:
            data = data.get(part)
        else:
            return data
    return data


def fields(data: Doc, personal: Sequence[str]) -> list[Field]:
    """The personal fields present in an event's data, in the schema's order; neighbours that
    cannot be read for the same reason (destroyed together) are said once."""
    out: list[Field] = []
    for dotted in personal:
        found = shown(_leaf(data, dotted))
        if found is None:
            continue
        last = out[-1] if out else None
        if last and found.state != "value" and (last.state, last.text) == (found.state,
                                                                           found.text):
            out[-1] = Field(f"{last.label}, {label(dotted)}", found.state, found.text)
        else:
            out.append(Field(label(dotted), found.state, found.text))
    return out


ORDER = ("gender", "first_name", "last_name", "email", "phone", "postal_address", "line1",
         "line2", "postal_code", "city", "country", "at", "ip", "location", "latitude",
         "longitude", "user_agent", "cookie_id")


def _ordered(value: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A mapping's items in the order a person reads an address (the database does not keep
    the order of a JSON object's keys)."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(value.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def rows(group: Mapping[str, Any] | None) -> list[Field]:
    """A nested personal group (a view's identity, contact or last connection) as labelled
    rows, leaving out what is absent; an instant (``at``) in UTC and Paris time."""
    out: list[Field] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in _ordered(value):
                walk(f"{path}.{key}" if path else key, inner)
        elif value is not None:
            text = dates.both(value) if path == "at" else str(value)
            out.append(Field(label(path), "value", text))

    walk("", group or {})
    return out


def _categories(items: Sequence[str] | None) -> str:
    return ", ".join(items or []) or "no category"


def _keys(keys: Sequence[Doc]) -> str:
    return ", ".join(f"{k['category']}" + (f" ({k['period']})" if k.get("period") else "")
                     for k in keys) or "none"


def _source(source: str) -> str:
    return "the ledger" if source == "registre" else source


Sentence = Callable[[Doc, Doc, dict[str, str]], str]


def _created(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    notice = f" (privacy notice {d['notice_version']})" if d.get("notice_version") else ""
    return f"Account created by {_source(e['source'])}{notice}"


def _updated(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    changed = [word(k) for k, v in d.items() if v is not None]
    return f"Account details rectified by {_source(e['source'])}: {join(changed) or 'nothing'}"


def _consent(verb: str) -> Sentence:
    def sentence(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
        how = MECHANISMS.get(d.get("mechanism") or "", "")
        notice = f" (privacy notice {d['notice_version']})" if d.get("notice_version") else ""
        return " ".join(x for x in (f"Consent to {join([word(p) for p in d['purposes']])}",
                                    verb, how) if x) + notice
    return sentence


def _expired(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    return (f"Consent to {join([word(p) for p in d['purposes']])} expired: its validity ran "
            "out, the website must ask again")


def _shared(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    who = ("processor " if d.get("recipient_kind") == "processor" else "") + d["recipient"]
    where = f", in {d['country']}" if d.get("country") else ""
    return (f"Data shared with {who} ({_categories(d.get('categories'))}) on the basis of "
            f"{BASES.get(d.get('basis') or '', word(d.get('basis')))}, for "
            f"{SERVICES.get(d.get('service') or '', word(d.get('service')))}{where}")


def _request_received(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    kinds[d["request_id"]] = d["kind"]
    verified = "identity verified" if d.get("identity_verified") else "identity not verified"
    return (f"{word(d['kind']).capitalize()} request received "
            f"{CHANNELS.get(d['channel'], word(d['channel']))} ({verified})")


def _request_name(d: Doc, kinds: dict[str, str]) -> str:
    kind = kinds.get(d["request_id"])
    return (f"{word(kind).capitalize()} request" if kind else "Request") + \
        f" {d['request_id'][:8]}"


def _request_extended(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    return (f"{_request_name(d, kinds)} extended by {d['months']} month(s): "
            f"{d.get('reason') or 'no reason given'}")


def _request_completed(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    why = f" ({d['reason']})" if d.get("reason") else ""
    return f"{_request_name(d, kinds)} completed: {word(d['outcome'])}{why}"


def _erasure_completed(e: Doc, d: Doc, kinds: dict[str, str]) -> str:
    kept = _keys(d.get("retained") or [])
    return (f"Erasure completed, certificate issued by the ledger: destroyed "
            f"{_keys(d.get('destroyed') or [])}; kept {kept}")


def _by(d: Doc) -> str:
    return "at the person's request" if d.get("requested_by") == "subject" else "by an operator"


SENTENCES: dict[str, Sentence] = {
    "AccountCreated": _created,
    "AccountUpdated": _updated,
    "ConnectionRecorded": lambda e, d, k: f"Connection recorded by {_source(e['source'])}",
    "ConsentGiven": _consent("given"),
    "ConsentRefused": _consent("refused"),
    "ConsentWithdrawn": _consent("withdrawn"),
    "ConsentExpired": _expired,
    "SharingAuthorised": lambda e, d, k: (
        f"Sharing with {d['recipient']} authorised ({_categories(d.get('categories'))}) for "
        f"{word(d.get('purpose'))}"),
    "SharingRevoked": lambda e, d, k: f"Sharing with {d['recipient']} revoked",
    "DataShared": _shared,
    "DocumentIssued": lambda e, d, k: (
        f"{word(d['kind']).capitalize()} {d['document_ref']} issued by {_source(e['source'])}"),
    "AccountDeleted": lambda e, d, k: f"Account deleted {_by(d)}",
    "ErasureRequested": lambda e, d, k: f"Erasure requested {_by(d)} (right to erasure, art. 17)",
    "LegalHoldPlaced": lambda e, d, k: (
        f"Legal hold {d['case_ref']} placed ({word(d['reason'])}) on "
        f"{_categories(d.get('categories')) if d.get('categories') else 'every category'}"),
    "LegalHoldReleased": lambda e, d, k: f"Legal hold {d['case_ref']} released",
    "KeysDestroyed": lambda e, d, k: f"Keys destroyed by the ledger: {_keys(d.get('keys') or [])}",
    "ErasureCompleted": _erasure_completed,
    "RequestReceived": _request_received,
    "RequestExtended": _request_extended,
    "RequestCompleted": _request_completed,
}


def sentence(event: Doc, kinds: dict[str, str] | None = None) -> str:
    """The sentence of one timeline event (its type's, or a plain one for an unknown type)."""
    make = SENTENCES.get(event["type"])
    data = event.get("data") or {}
    if make is None:
        return f"{event['type']} recorded by {_source(event['source'])}"
    try:
        return make(event, data, {} if kinds is None else kinds)
    except (KeyError, TypeError, AttributeError):
        return f"{event['type']} recorded by {_source(event['source'])}"


def lines(timeline: Doc, unauthorised: Mapping[str, str],
          personal: Mapping[str, Sequence[str]]) -> list[Line]:
    """Every event of a timeline document as a `Line`, in log order.

    ``unauthorised`` maps the event id of each unauthorised disclosure to why (from the desk's
    disclosures); ``personal`` maps an event type to the dotted paths of its personal fields.
    """
    kinds: dict[str, str] = {}
    out = []
    for event in timeline["events"]:
        text = sentence(event, kinds)
        why = unauthorised.get(event["event_id"])
        flag = "unauthorised" if why is not None else None
        if flag:
            text += " — unauthorised"
        if event.get("duplicate"):
            text += " (the same event id again: applied once)"
        out.append(Line(event["event_id"], event["type"], event["occurred_at"], text, flag,
                        f"Unauthorised disclosure: {why}" if flag else None,
                        fields(event.get("data") or {}, personal.get(event["type"], ())),
                        event["source"] == "registre", bool(event.get("duplicate"))))
    return out

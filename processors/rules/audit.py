"""The compliance questions as pure folds over one subject's Records (no broker, no database).

Every function takes the subject's records *in log order* (as `registre.services.replay` reads
them) and an instant; it reads no clock. An event id seen twice is counted once (the first copy),
as the processors do.

* ``consent_at(records, purpose, at, months)``: the latest consent choice (ConsentGiven,
  ConsentRefused, ConsentWithdrawn) naming ``purpose`` with ``occurred_at <= at`` wins; ties on the
  instant go to the later record in the log. A granted or refused choice is *expired* from
  ``add_months(choice_at, months)`` on (the policy's consent validity), or from a ConsentExpired
  record that names that choice, whichever comes first. No choice at all: ``none``.
* ``disclosures(records)``: every DataShared, each judged at its own instant. A disclosure on
  the basis of a legal obligation, or to a processor under a processor contract, is authorised
  by that basis. Any other (a third party, or a basis of ``authorisation``) needs the
  recipient's SharingAuthorised active at that instant (granted at or before it, not revoked
  at or before it; a later SharingAuthorised of the same recipient replaces the earlier one)
  covering every category disclosed; otherwise it is flagged ``authorised: false``.
* ``as_of(records, at, policy)``: the customer view (`processors.rules.fold.ViewFold`) folded over
  the records with ``occurred_at <= at``, in log order, skipping what the processors reject;
  None when nothing about the subject had happened by then (e.g. before the account existed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from events.catalogue import Catalogue, load_catalogue
from events.codec import Record
from events.model import format_instant
from processors.rules.fold import ViewFold
from processors.rules.policy import Policy
from processors.rules.timeutil import add_months, ensure_utc

CHOICES = {"ConsentGiven": "granted", "ConsentRefused": "refused",
           "ConsentWithdrawn": "withdrawn"}
EXPIRING = frozenset({"granted", "refused"})
STATUSES = ("granted", "refused", "withdrawn", "expired", "none")
SELF_AUTHORISING = {("processor", "processor_contract"): "processor contract"}


def unique(records: Iterable[Record]) -> list[Record]:
    """The records in log order, each event id once (the first copy)."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.event_id not in seen:
            seen.add(r.event_id)
            out.append(r)
    return out


def no_choice() -> dict[str, Any]:
    return {"status": "none", "event_id": None, "notice_version": None, "mechanism": None,
            "choice_at": None, "expires_at": None, "expiry_event_id": None}


def judge_choice(status: str, event_id: str, notice_version: str | None,
                 mechanism: str | None, choice_at: datetime, at: datetime,
                 expiry_event_id: str | None, months: int) -> dict[str, Any]:
    """The answer for the winning choice (shared with the projection's query)."""
    expires = add_months(choice_at, months) if status in EXPIRING else None
    if expires is not None and (at >= expires or expiry_event_id is not None):
        status = "expired"
    else:
        expiry_event_id = None
    return {"status": status, "event_id": event_id, "notice_version": notice_version,
            "mechanism": mechanism, "choice_at": format_instant(choice_at),
            "expires_at": format_instant(expires) if expires else None,
            "expiry_event_id": expiry_event_id}


def consent_at(records: Sequence[Record], purpose: str, at: datetime,
               months: int) -> dict[str, Any]:
    """{status, event_id, notice_version, mechanism, choice_at, expires_at, expiry_event_id}."""
    at = ensure_utc(at, "at")
    best: Record | None = None
    expiries: dict[str, tuple[datetime, int, str]] = {}  # choice id -> first ConsentExpired
    for index, r in enumerate(unique(records)):
        if r.occurred_at > at or purpose not in (r.data.get("purposes") or ()):
            continue
        if r.type in CHOICES:
            if best is None or r.occurred_at >= best.occurred_at:  # ties: later in the log
                best = r
        elif r.type == "ConsentExpired":
            choice = r.data["choice_event_id"]
            mark = (r.occurred_at, index, r.event_id)
            if choice not in expiries or mark < expiries[choice]:
                expiries[choice] = mark
    if best is None:
        return no_choice()
    expiry = expiries.get(best.event_id)
    return judge_choice(CHOICES[best.type], best.event_id, best.data.get("notice_version"),
                        best.data.get("mechanism"), best.occurred_at, at,
                        expiry[2] if expiry else None, months)


def _authorisation_at(sharing: list[Record], recipient: str, at: datetime
                      ) -> tuple[Record | None, Record | None]:
    """(active SharingAuthorised of ``recipient`` at ``at``, the revocation that ended the
    latest one if none is active). ``sharing`` is sorted by (instant, log order)."""
    active: Record | None = None
    revoked: Record | None = None
    for r in sharing:
        if r.occurred_at > at:
            break
        if r.data["recipient"] != recipient:
            continue
        if r.type == "SharingAuthorised":
            active, revoked = r, None
        elif active is not None:
            active, revoked = None, r
    return active, revoked


def disclosures(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Every disclosure of the subject's data, oldest first, each with ``authorised``."""
    recs = unique(records)
    order = {r.event_id: i for i, r in enumerate(recs)}
    sharing = sorted((r for r in recs if r.type in ("SharingAuthorised", "SharingRevoked")),
                     key=lambda r: (r.occurred_at, order[r.event_id]))
    out = []
    shared = sorted((r for r in recs if r.type == "DataShared"),
                    key=lambda r: (r.occurred_at, order[r.event_id]))
    for r in shared:
        d = r.data
        categories = sorted(d["categories"])
        auth_id = None
        if d["basis"] == "legal_obligation":
            authorised, reason = True, "legal obligation"
        elif (d["recipient_kind"], d["basis"]) in SELF_AUTHORISING:
            authorised, reason = True, SELF_AUTHORISING[(d["recipient_kind"], d["basis"])]
        else:
            auth, revoked = _authorisation_at(sharing, d["recipient"], r.occurred_at)
            if auth is not None:
                auth_id = auth.event_id
                missing = sorted(set(categories) - set(auth.data["categories"]))
                authorised = not missing
                reason = (f"authorisation of {format_instant(auth.occurred_at)}"
                          if authorised else
                          f"authorisation of {format_instant(auth.occurred_at)} does not cover "
                          + ", ".join(missing))
            else:
                authorised = False
                reason = (f"authorisation revoked at {format_instant(revoked.occurred_at)}"
                          if revoked is not None else f"no authorisation of {d['recipient']}")
            if d["recipient_kind"] == "third_party" and d["basis"] == "processor_contract":
                reason += " (a third party is not a processor)"
        out.append({
            "recipient": d["recipient"], "recipient_kind": d["recipient_kind"],
            "service": d["service"], "categories": categories, "country": d["country"],
            "basis": d["basis"], "occurred_at": format_instant(r.occurred_at),
            "authorised": authorised, "reason": reason, "authorisation_event_id": auth_id,
            "event_id": r.event_id,
        })
    return out


def as_of(records: Sequence[Record], at: datetime, policy: Policy,
          catalogue: Catalogue | None = None) -> dict[str, Any] | None:
    """The customer view document as it stood at ``at`` (None if nothing had happened yet)."""
    at = ensure_utc(at, "at")
    apply = ViewFold(policy, catalogue or load_catalogue())
    view: dict[str, Any] | None = None
    applied: set[str] = set()
    for r in records:
        if r.occurred_at > at or r.event_id in applied:
            continue
        try:
            view = apply(view, r)
        except Exception:  # noqa: BLE001 - the processors dead-letter it; so do we
            continue
        applied.add(r.event_id)
    return view

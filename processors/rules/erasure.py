"""Erasure and retention as pure functions: from a subject's view, its keys, the policy and the
clock, the plan of what to destroy, and the events by which the ledger records it.

The events carry no key material and no personal data: categories, months, reasons and dates.
Their ids are derived from what they record, so a plan carried out twice (a crash between the
destruction and the acknowledgement) appends each fact once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events.keys import KeyRef
from events.model import Event
from processors.rules.policy import Policy
from processors.rules.retention import (
    Decision,
    Hold,
    SubjectFacts,
    decide,
    sharing_records_until,
)
from processors.rules.timeutil import add_months

SOURCE = "registre"
_NS = uuid.UUID("8f1f6a52-3c64-4d0b-9a55-6b1d2f6c0e11")
END_TRIGGERS = frozenset({"AccountDeleted", "ErasureRequested"})
ENFORCE_TRIGGERS = END_TRIGGERS | {"LegalHoldReleased"}


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def facts_from_view(doc: Mapping[str, Any]) -> SubjectFacts:
    """The non-personal facts the policy needs, read from a customer view document."""
    ends = [(a, k) for a, k in ((_at(doc.get("deleted_at")), "deleted"),
                                (_at(doc.get("erased_at")), "erased")) if a]
    ended_at, end_kind = min(ends) if ends else (None, None)
    holds = tuple(
        Hold(case, frozenset(h.get("categories") or ()), datetime.fromisoformat(h["since"]))
        for case, h in sorted(doc.get("holds", {}).items())
    )
    return SubjectFacts(
        subject_id=doc["subject_id"], ended_at=ended_at, end_kind=end_kind,
        documents=tuple(datetime.fromisoformat(d["at"]) for d in doc.get("documents", [])),
        holds=holds,
    )


@dataclass(frozen=True)
class Plan:
    subject_id: str
    decision: Decision
    mark_erased: bool

    @property
    def destroy_refs(self) -> list[KeyRef]:
        return [d.ref for d in self.decision.destroy]


def sharing_records_until_view(doc: Mapping[str, Any], policy: Policy) -> datetime | None:
    """Until when the subject's sharing and disclosure records are shown (None: account live).

    The records stay in the log (append-only and signed, and holding no personal field beside
    the pseudonymous id); from that instant on the view, the answers and the export leave them
    out.
    """
    return sharing_records_until(facts_from_view(doc), policy)


def plan(doc: Mapping[str, Any], keys: Iterable[KeyRef], policy: Policy, now: datetime) -> Plan:
    """What to do for this subject now. An ended account never gets a new key again."""
    facts = facts_from_view(doc)
    decision = decide(facts, keys, policy, now)
    return Plan(doc["subject_id"], decision, mark_erased=facts.ended_by(now) is not None)


def _event_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


def keys_destroyed(plan: Plan, at: datetime, trigger_event_id: str | None) -> Event | None:
    """The log record of a destruction (None when nothing is destroyed)."""
    if not plan.decision.destroy:
        return None
    keys = [{"category": d.ref.category, "period": d.ref.period or None, "reason": d.reason}
            for d in plan.decision.destroy]
    labels = ",".join(d.ref.label for d in plan.decision.destroy)
    return Event(_event_id("KeysDestroyed", plan.subject_id, labels), "KeysDestroyed",
                 plan.subject_id, at, SOURCE,
                 {"keys": keys, "trigger_event_id": trigger_event_id})


def erasure_certificate(plan: Plan, at: datetime, trigger_event_id: str) -> Event:
    """The erasure certificate: what was destroyed and what is kept, why and until when."""
    destroyed = [{"category": d.ref.category, "period": d.ref.period or None,
                  "reason": d.reason} for d in plan.decision.destroy]
    retained: dict[str, dict[str, Any]] = {}
    for k in plan.decision.keep:
        entry = retained.setdefault(k.ref.category, {"category": k.ref.category,
                                                     "until": k.until, "reason": k.reason})
        if k.until is None or (entry["until"] is not None and k.until > entry["until"]):
            entry["until"] = k.until
    return Event(_event_id("ErasureCompleted", trigger_event_id), "ErasureCompleted",
                 plan.subject_id, at, SOURCE,
                 {"trigger_event_id": trigger_event_id, "destroyed": destroyed,
                  "retained": sorted(retained.values(), key=lambda r: r["category"]),
                  "holds": list(plan.decision.held)})


def consent_expiries(doc: Mapping[str, Any], now: datetime, policy: Policy) -> list[Event]:
    """ConsentExpired, recorded at ``now``, for every granted or refused choice past the
    policy's validity at ``now``.

    The expiry is worked out from the choice's instant and the loaded policy, not from what
    the view stored when it was folded, so a changed policy takes effect at once.
    """
    by_choice: dict[str, list[str]] = {}
    for purpose, c in sorted(doc.get("consents", {}).items()):
        if c["status"] not in ("granted", "refused"):
            continue
        if add_months(datetime.fromisoformat(c["at"]), policy.consent_validity_months) <= now:
            by_choice.setdefault(c["event_id"], []).append(purpose)
    return [
        Event(_event_id("ConsentExpired", choice), "ConsentExpired", doc["subject_id"], now,
              SOURCE, {"purposes": purposes, "choice_event_id": choice})
        for choice, purposes in by_choice.items()
    ]

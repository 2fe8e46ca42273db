"""A subject's retention facts folded straight from its events: the reference that the
processors' view-based facts (`processors.rules.erasure.facts_from_view`) are tested against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from processors.rules.retention import END_EVENTS, Hold, SubjectFacts, _categories
from processors.rules.timeutil import ensure_utc


def facts_from_events(
    subject_id: str, events: Iterable[tuple[str, datetime, Mapping[str, Any]]]
) -> SubjectFacts:
    """The facts of ``(type, occurred_at, non-personal data)`` events, in any order.

    Events are taken in time order (ties in the given order). The first AccountDeleted or
    ErasureRequested ends the account; later ones change nothing. A LegalHoldPlaced for a
    case that is already open widens its categories; a LegalHoldReleased closes the open
    hold of that case (a release of no open hold is ignored); a case placed again after
    its release is a new hold. Other event types are ignored.
    """
    timed = sorted(
        ((ensure_utc(at, f"{kind}.occurred_at"), i, kind, data or {})
         for i, (kind, at, data) in enumerate(events)),
        key=lambda e: (e[0], e[1]),
    )
    ended_at: datetime | None = None
    end_kind: str | None = None
    documents: list[datetime] = []
    holds: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for at, _, kind, data in timed:
        if kind in END_EVENTS:
            if ended_at is None:
                ended_at, end_kind = at, END_EVENTS[kind]
        elif kind == "DocumentIssued":
            documents.append(at)
        elif kind == "LegalHoldPlaced":
            case = data.get("case_ref")
            cats = _categories(data.get("categories"))
            if case in open_:
                held = open_[case]
                held["categories"] = (
                    frozenset() if not held["categories"] or not cats
                    else held["categories"] | cats
                )
            else:
                hold = {"case_ref": case, "categories": cats, "placed_at": at,
                        "released_at": None}
                holds.append(hold)
                open_[case] = hold
        elif kind == "LegalHoldReleased":
            hold = open_.pop(data.get("case_ref"), None)
            if hold is not None:
                hold["released_at"] = at
    return SubjectFacts(
        subject_id=subject_id,
        ended_at=ended_at,
        end_kind=end_kind,
        documents=tuple(documents),
        holds=tuple(Hold(**h) for h in holds),
    )

"""Erasure, retention and legal hold: the pure decision of which keys to destroy, and when.

``decide(facts, keys, policy, now)`` looks at a subject's non-personal facts (end of account,
documents issued, legal holds), the keys the subject still has and the clock ``now``, and says
for every key: destroy it now (why, and since when it is due), or keep it (why, and until when).
It reads no clock, no broker and no database; the same inputs always give the same, sorted,
answer. Everything is judged *as of* ``now``: an end, a document or a hold later than ``now`` is
not known yet, so a clock moved forward over a fixed set of facts replays the subject's life.

Rules (domain.md, "Retention, erasure and legal hold"; durations from ``Policy``):

* **identity, contact** (one key per subject and category, period ``""``): kept while the
  account lives. The *end* of the account is the first ``AccountDeleted`` or
  ``ErasureRequested``. At the end they are due at once, unless a ``DocumentIssued`` occurred at
  or before the end: then they are kept ("legal retention: document issued") until
  ``add_months(end, identity_contact_after_end_with_document_months)`` (default 60) and due
  from that instant on (``now >= due_at`` destroys).
* **connection, location** (one key per subject, category and UTC month ``"YYYY-MM"``): the key
  of month M is due ``connection_location_months`` (default 13) after the *end* of M, the end
  being the first instant of the next month. So the key of 2026-01 is due at
  ``add_months(2026-02-01T00:00Z, 13) = 2027-03-01T00:00:00Z``, and every record in it was kept
  at least 13 months. At the end of the account they are due at once (``min(end, that date)``):
  a document does not retain connection or location data.
* **legal hold**: a hold is active at ``now`` when ``placed_at <= now < released_at`` (or never
  released). An active hold whose categories cover a key's category (no categories = all)
  suspends its destruction, also past its due date: the key is kept, ``until=None``, with the
  hold's case ref in ``held_by``. Once released (``now >= released_at``) the destruction that
  fell due during the hold happens: ``decide`` at any later instant destroys the key.

A key whose due date has passed and that no active hold covers is destroyed; in particular every
key of a deleted or erased subject with no document (and no hold) is destroyed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from events.catalogue import CATEGORIES, MONTHLY_CATEGORIES
from events.keys import KeyRef
from processors.rules.policy import Policy
from processors.rules.timeutil import add_months, ensure_utc, format_utc, month_end, parse_period

END_EVENTS: Mapping[str, str] = {"AccountDeleted": "deleted", "ErasureRequested": "erased"}
END_KINDS = frozenset(END_EVENTS.values())
ACCOUNT_CATEGORIES = frozenset({"identity", "contact"})
_END_WORDS = {"deleted": "account deleted", "erased": "erasure requested"}


def _categories(value: Iterable[str] | None) -> frozenset[str]:
    cats = frozenset(value or ())
    unknown = sorted(cats - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categor(y/ies) {', '.join(unknown)} (known: {CATEGORIES})")
    return cats


@dataclass(frozen=True)
class Hold:
    """A legal hold of the subject: ``categories`` empty (or None) means every category.

    Active at ``now`` when ``placed_at <= now`` and it is not released by then
    (``released_at`` None or later than ``now``).
    """

    case_ref: str
    categories: frozenset[str]
    placed_at: datetime
    released_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.case_ref, str) or not self.case_ref:
            raise ValueError("a hold needs a case_ref")
        object.__setattr__(self, "categories", _categories(self.categories))
        object.__setattr__(self, "placed_at", ensure_utc(self.placed_at, "placed_at"))
        if self.released_at is not None:
            released = ensure_utc(self.released_at, "released_at")
            if released < self.placed_at:
                raise ValueError(f"hold {self.case_ref}: released before it was placed")
            object.__setattr__(self, "released_at", released)

    def covers(self, category: str) -> bool:
        return not self.categories or category in self.categories

    def active_at(self, now: datetime) -> bool:
        return self.placed_at <= now and (self.released_at is None or now < self.released_at)

    @property
    def scope(self) -> str:
        return ",".join(sorted(self.categories)) if self.categories else "all categories"


@dataclass(frozen=True)
class SubjectFacts:
    """What the decision needs about one subject, from its non-personal events only."""

    subject_id: str
    ended_at: datetime | None = None  # first AccountDeleted or ErasureRequested instant
    end_kind: str | None = None  # "deleted" | "erased"
    documents: tuple[datetime, ...] = ()  # DocumentIssued instants
    holds: tuple[Hold, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.subject_id, str) or not self.subject_id:
            raise ValueError("subject_id is required")
        if (self.ended_at is None) != (self.end_kind is None):
            raise ValueError("ended_at and end_kind go together")
        if self.end_kind is not None and self.end_kind not in END_KINDS:
            raise ValueError(f"end_kind must be one of {sorted(END_KINDS)}, got {self.end_kind!r}")
        if self.ended_at is not None:
            object.__setattr__(self, "ended_at", ensure_utc(self.ended_at, "ended_at"))
        docs = sorted(ensure_utc(d, "document instant") for d in self.documents)
        object.__setattr__(self, "documents", tuple(docs))
        holds = tuple(self.holds)
        if not all(isinstance(h, Hold) for h in holds):
            raise TypeError("holds must be Hold values")
        object.__setattr__(
            self, "holds", tuple(sorted(holds, key=lambda h: (h.placed_at, h.case_ref)))
        )

    def ended_by(self, now: datetime) -> datetime | None:
        """The end of the account if it happened at or before ``now``."""
        return self.ended_at if self.ended_at is not None and self.ended_at <= now else None

    def documents_before_end(self) -> tuple[datetime, ...]:
        """DocumentIssued instants at or before the end (the ones that retain identity data)."""
        if self.ended_at is None:
            return ()
        return tuple(d for d in self.documents if d <= self.ended_at)

    def active_holds(self, now: datetime) -> tuple[Hold, ...]:
        return tuple(h for h in self.holds if h.active_at(now))


@dataclass(frozen=True)
class Destroy:
    """Destroy this key now: it has been due since ``due_at`` (<= now)."""

    ref: KeyRef
    reason: str
    due_at: datetime


@dataclass(frozen=True)
class Keep:
    """Keep this key. ``until`` None = while the account lives / while a hold lasts.

    ``due_at`` is when the retention rules make it due (None while the account lives; in the
    past when a legal hold suspends an overdue destruction); ``held_by`` names the active holds
    covering it (their destruction is suspended while they last).
    """

    ref: KeyRef
    until: datetime | None
    reason: str
    due_at: datetime | None = None
    held_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    destroy: tuple[Destroy, ...]  # sorted by ref
    keep: tuple[Keep, ...]  # sorted by ref
    held: tuple[str, ...]  # case refs of the holds active at ``now``, sorted

    @property
    def destroy_refs(self) -> tuple[KeyRef, ...]:
        return tuple(d.ref for d in self.destroy)

    @property
    def keep_refs(self) -> tuple[KeyRef, ...]:
        return tuple(k.ref for k in self.keep)


def _check_ref(facts: SubjectFacts, ref: KeyRef) -> None:
    if ref.subject_id != facts.subject_id:
        raise ValueError(f"key {ref.label} is not a key of subject {facts.subject_id}")
    if ref.category not in CATEGORIES:
        raise ValueError(f"key {ref.label}: unknown category {ref.category!r}")
    if ref.category in MONTHLY_CATEGORIES:
        parse_period(ref.period)
    elif ref.period != "":
        raise ValueError(f"key {ref.label}: {ref.category} keys have no period")


@dataclass(frozen=True)
class _Rule:
    due_at: datetime | None  # None: not due while the account lives
    due_reason: str  # why it is destroyed once due
    keep_reason: str  # why it is kept before that


def _rule(facts: SubjectFacts, ref: KeyRef, policy: Policy, ended: datetime | None) -> _Rule:
    """The retention rule of one key as of a clock at which the account ended at ``ended``."""
    cat = ref.category
    end_word = _END_WORDS[facts.end_kind] if ended is not None and facts.end_kind else ""
    if cat in ACCOUNT_CATEGORIES:
        if ended is None:
            return _Rule(None, "", f"account live: {cat} data is kept while the account lives")
        docs = facts.documents_before_end()
        if not docs:
            return _Rule(
                ended,
                f"{end_word} on {format_utc(ended)}: {cat} data is not kept after the end of"
                " the account (no document issued)",
                "",
            )
        months = policy.identity_contact_after_end_with_document_months
        due = add_months(ended, months)
        last = format_utc(docs[-1])
        issued = f"on {last}" if len(docs) == 1 else f"({len(docs)}, last on {last})"
        end = f"the end of the account ({end_word} on {format_utc(ended)})"
        return _Rule(
            due,
            f"legal retention ended: document issued {issued}; {cat} data was kept {months}"
            f" months after {end}, until {format_utc(due)}",
            f"legal retention: document issued {issued}; {cat} data kept, readable by"
            f" compliance only, {months} months after {end}, until {format_utc(due)}",
        )
    months = policy.connection_location_months
    regular = add_months(month_end(ref.period), months)
    if ended is not None and ended < regular:
        return _Rule(
            ended,
            f"{end_word} on {format_utc(ended)}: {cat} data of {ref.period} is destroyed at the"
            " end of the account (documents do not retain it)",
            "",
        )
    return _Rule(
        regular,
        f"retention elapsed: {cat} data of {ref.period} is kept {months} months after the end"
        f" of that month, until {format_utc(regular)}",
        f"{cat} data of {ref.period} kept {months} months after the end of that month,"
        f" until {format_utc(regular)}",
    )


def _cases(holds: Iterable[Hold]) -> tuple[str, ...]:
    return tuple(sorted({h.case_ref for h in holds}))


def decide(
    facts: SubjectFacts, keys: Iterable[KeyRef], policy: Policy, now: datetime
) -> Decision:
    """For every key the subject still has: destroy now, or keep (why, until when), at ``now``.

    Pure and deterministic: duplicate keys count once, both lists are sorted by key. A key of
    another subject, of an unknown category or with a malformed period is a ``ValueError``.
    """
    now = ensure_utc(now, "now")
    refs = sorted(set(keys))
    for ref in refs:
        _check_ref(facts, ref)
    ended = facts.ended_by(now)
    active = facts.active_holds(now)
    destroy: list[Destroy] = []
    keep: list[Keep] = []
    for ref in refs:
        rule = _rule(facts, ref, policy, ended)
        held_by = _cases(h for h in active if h.covers(ref.category))
        due = rule.due_at is not None and rule.due_at <= now
        if due and not held_by:
            assert rule.due_at is not None
            reason = rule.due_reason
            lifted = [
                h for h in facts.holds
                if h.covers(ref.category) and h.released_at is not None
                and h.placed_at <= now and rule.due_at < h.released_at <= now
            ]
            for hold in sorted(lifted, key=lambda h: (h.released_at, h.case_ref)):
                reason += (
                    f"; its destruction was suspended by legal hold {hold.case_ref}"
                    f" until its release on {format_utc(hold.released_at)}"  # type: ignore[arg-type]
                )
            destroy.append(Destroy(ref, reason, rule.due_at))
        elif due:
            keep.append(Keep(
                ref,
                None,
                f"legal hold {', '.join(held_by)}: destruction due {format_utc(rule.due_at)}"
                f" is suspended until the hold is released ({rule.due_reason})",
                rule.due_at,
                held_by,
            ))
        elif held_by:
            keep.append(Keep(
                ref,
                None,
                f"{rule.keep_reason}; legal hold {', '.join(held_by)} active: no destruction"
                " while it lasts",
                rule.due_at,
                held_by,
            ))
        else:
            keep.append(Keep(ref, rule.due_at, rule.keep_reason, rule.due_at))
    return Decision(tuple(destroy), tuple(keep), _cases(active))


def _schedule_key(item: Destroy | Keep) -> tuple[datetime, KeyRef]:
    assert item.due_at is not None
    return item.due_at, item.ref


def due_within(
    facts: SubjectFacts, keys: Iterable[KeyRef], policy: Policy, now: datetime, days: float
) -> list[Destroy | Keep]:
    """The retention schedule: every key due for destruction by ``now + days``, by due date.

    ``Destroy`` items are due already (they go at the next pass). ``Keep`` items fall due
    within the horizon (``due_at`` in ``(now, now + days]``), or are overdue but suspended by
    an active legal hold (``held_by`` names it; they go when it is released). Keys kept while
    the account lives have no due date and are not listed.
    """
    if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
        raise ValueError(f"days must be a non-negative number, got {days!r}")
    now = ensure_utc(now, "now")
    horizon = now + timedelta(days=days)
    decision = decide(facts, keys, policy, now)
    items: list[Destroy | Keep] = list(decision.destroy)
    items += [k for k in decision.keep if k.due_at is not None and k.due_at <= horizon]
    return sorted(items, key=_schedule_key)


def consent_expires_at(given_at: datetime, policy: Policy) -> datetime:
    """When a consent choice given at ``given_at`` expires (unless withdrawn before)."""
    return add_months(ensure_utc(given_at, "given_at"), policy.consent_validity_months)


def sharing_records_until(facts: SubjectFacts, policy: Policy) -> datetime | None:
    """Until when the subject's sharing and disclosure records are kept (None: account live)."""
    if facts.ended_at is None:
        return None
    return add_months(facts.ended_at, policy.sharing_records_after_end_months)

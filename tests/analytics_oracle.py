"""The analysts' figures computed straight from a list of records (pure, no database): the
reference that the analytics views are tested against. The suppression threshold here is the
contract of domain.md (groups of fewer than 10 subjects suppressed); the views state it once,
in ``projections/migrations/006_analytics.sql``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from events.catalogue import Catalogue, load_catalogue
from events.codec import KeyLookup, Record
from projections.analytics import UNKNOWN, Group, connection_country, contributions

MIN_SUBJECTS = 10  # must equal the threshold written in migrations/006_analytics.sql


# view -> (measure, key columns, figure columns), in the views' column order
VIEWS: Mapping[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "accounts_created_daily": ("accounts_created", ("day",), ("accounts", "subjects")),
    "accounts_deleted_daily": ("accounts_deleted", ("day",), ("accounts", "subjects")),
    "erasures_daily": ("erasures", ("day",), ("erasures", "subjects")),
    "connections_daily": ("connections", ("day", "country"), ("connections", "subjects")),
    "consent_daily": ("consent", ("day", "purpose"),
                      ("asked", "granted", "refused", "consent_rate", "subjects")),
    "withdrawals_daily": ("withdrawals", ("day", "purpose"), ("withdrawals", "subjects")),
    "disclosures_monthly": ("disclosures", ("month", "recipient", "basis"),
                            ("disclosures", "subjects")),
}


@dataclass
class Tally:
    events: int = 0
    granted: int = 0
    subjects: set[str] = field(default_factory=set)


def tally(records: Iterable[Record], lookup: KeyLookup | None = None,
          catalogue: Catalogue | None = None) -> dict[Group, Tally]:
    """Every group's figures, straight from the records (each event id counted once).

    ``lookup`` opens location keys for the country of connections (None: all ``unknown``).
    Pure: no database, no clock.
    """
    catalogue = catalogue or load_catalogue()
    out: dict[Group, Tally] = {}
    seen: set[str] = set()
    for record in records:
        if record.event_id in seen:
            continue
        seen.add(record.event_id)
        country = (connection_country(record, lookup, catalogue)
                   if record.type == "ConnectionRecorded" else UNKNOWN)
        for group, events, granted in contributions(record, country):
            t = out.setdefault(group, Tally())
            t.events += events
            t.granted += granted
            t.subjects.add(record.subject_id)
    return out


def _rate(granted: int, asked: int) -> Decimal | None:
    if not asked:
        return None
    return (Decimal(granted) / Decimal(asked)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def _figures(measure: str, t: Tally) -> tuple[Any, ...]:
    n = len(t.subjects)
    if measure == "consent":
        return (t.events, t.granted, t.events - t.granted, _rate(t.granted, t.events), n)
    return (t.events, n)


def _keys(g: Group) -> tuple[Any, ...]:
    if g.measure == "disclosures":
        return (g.period, g.dim1, g.dim2)
    if g.measure in ("connections", "consent", "withdrawals"):
        return (g.period, g.dim1)
    return (g.period,)


def analyst_rows(tallies: Mapping[Group, Tally]) -> dict[str, list[tuple[Any, ...]]]:
    """What each analytics view shows for these tallies: key columns, figures, suppressed.

    A group of fewer than MIN_SUBJECTS subjects keeps its keys, every figure None and
    ``suppressed`` True. Rows are sorted; column order is that of ``VIEWS``.
    """
    out: dict[str, list[tuple[Any, ...]]] = {view: [] for view in VIEWS}
    by_measure = {measure: view for view, (measure, _, _) in VIEWS.items()}
    for g, t in tallies.items():
        view = by_measure[g.measure]
        width = len(VIEWS[view][2])
        if len(t.subjects) >= MIN_SUBJECTS:
            out[view].append((*_keys(g), *_figures(g.measure, t), False))
        else:
            out[view].append((*_keys(g), *([None] * width), True))
    return {view: sorted(rows) for view, rows in out.items()}


def analyst_figures(records: Iterable[Record], lookup: KeyLookup | None = None,
                    catalogue: Catalogue | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """The views' rows computed directly from the records (``analyst_rows(tally(...))``)."""
    return analyst_rows(tally(records, lookup, catalogue))


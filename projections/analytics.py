"""Analyst projections: per-day and per-month aggregates, groups under 10 subjects suppressed.

What analysts read (schema ``analytics``, views only; see ``migrations/006_analytics.sql``):

============================== ================================================================
view                           one row per group
============================== ================================================================
accounts_created_daily         UTC day: ``AccountCreated``
accounts_deleted_daily         UTC day: ``AccountDeleted``
erasures_daily                 UTC day: ``ErasureRequested``
connections_daily              UTC day x country of the connection (``unknown`` if none/unreadable)
consent_daily                  UTC day x purpose: asked (``ConsentGiven`` + ``ConsentRefused``
                               choices), granted, refused, consent_rate = granted / asked
withdrawals_daily              UTC day x purpose: ``ConsentWithdrawn`` choices
disclosures_monthly            UTC month x recipient x basis: ``DataShared``
============================== ================================================================

A *group* is the set of distinct subjects behind one row. Every figure of a row is computed
from that group only, and a group of fewer than 10 subjects is shown with
``suppressed = true`` and every figure NULL. Rows hold coarse values only (day or month,
country code, purpose, recipient, basis): never a subject id, an IP, a city or coordinates.

Incremental distinct counts need to know who is already in a group: the private table
``projections.analytics_members`` (unreadable by the analyst and by compliance) keeps one row
per group and subject, keyed by a 16-byte digest of its five values that PostgreSQL computes
(migration 021: a narrow key made the processors' costliest insert a third cheaper). For a
connection group with a known country the member is not the subject id but
``HMAC(location data key of that subject and month, group)``: the country a subject connected
from is never stored in clear beside its id, and once that key is destroyed
(erasure, or 13 months) the row can no longer be tied to the subject. Every other member is
``s:<subject_id>``, facts that the log itself keeps in clear (type, subject, instant, purpose).

**Country of a connection.** It is a sealed leaf (``data.location.country``, pii category
``location``), so the hook decrypts that one leaf, and nothing else, inside the batch
transaction: ``make_hook(master_key)`` unwraps the subject's location key of that month
through the key store (`events.keystore.unwrapped_keys_in`), keeps only a two-letter code and
forgets the key. A country that is absent, does not decrypt (key destroyed before the event was
projected) or is not a two-letter code counts as ``unknown``. Consequence for ``registre
rebuild``: a rebuild replays the log with the keys that exist *then*, so connections whose
location key has been destroyed since (erasure, expiry after 13 months) move from their country to
``unknown``; every other figure is rebuilt identically. Residual exposure, stated plainly:
each batch's increments are written in the same transaction as the batch's other rows, so
someone with raw access to the WAL or row versions could correlate a country counter with a
batch holding a single connection; aggregates and tokens alone reveal nothing per subject.

The tests compute the very same figures directly from the records (``tests/analytics_oracle``)
and compare them with the views.
"""

from __future__ import annotations

import hmac
import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date
from typing import NamedTuple

import psycopg
import structlog

from events.catalogue import Catalogue, PiiField, load_catalogue
from events.codec import KeyLookup, Record, lookup_from, open_field
from events.crypto import sealed_version
from events.keys import KeyRef, key_period
from events.keystore import send_wrapped_keys, unwrap_rows
from projections.writer import Hook, Outcome, ReadingHook, Rows

log = structlog.get_logger("registre.analytics")

UNKNOWN = "unknown"
MAX_RECIPIENT = 200  # characters of a recipient kept as a group key
_COUNTRY = re.compile(r"[A-Z]{2}")
_TOKEN_LABEL = b"registre/analytics/member/v1"

RESET_SQL: tuple[str, ...] = (
    "DELETE FROM projections.analytics_members",
    "DELETE FROM projections.analytics_totals",
)



class Group(NamedTuple):
    """One row of one view: the measure, its day (or month) and its coarse dimensions (a
    tuple: made and hashed at C speed, several times per event)."""

    measure: str
    period: date
    dim1: str = ""
    dim2: str = ""


def contributions(record: Record, country: str = UNKNOWN) -> list[tuple[Group, int, int]]:
    """(group, events, granted) that one applied record adds; ``country`` for a connection."""
    day = record.occurred_at.astimezone(UTC).date()
    kind, d = record.type, record.data
    if kind == "AccountCreated":
        return [(Group("accounts_created", day), 1, 0)]
    if kind == "AccountDeleted":
        return [(Group("accounts_deleted", day), 1, 0)]
    if kind == "ErasureRequested":
        return [(Group("erasures", day), 1, 0)]
    if kind == "ConnectionRecorded":
        return [(Group("connections", day, country), 1, 0)]
    if kind in ("ConsentGiven", "ConsentRefused"):
        granted = 1 if kind == "ConsentGiven" else 0
        return [(Group("consent", day, p), 1, granted) for p in sorted(set(d["purposes"]))]
    if kind == "ConsentWithdrawn":
        return [(Group("withdrawals", day, p), 1, 0) for p in sorted(set(d["purposes"]))]
    if kind == "DataShared":  # recipient cut to MAX_RECIPIENT: a key must fit an index row
        month = day.replace(day=1)
        return [(Group("disclosures", month, d["recipient"][:MAX_RECIPIENT], d["basis"]), 1, 0)]
    return []


def _country_field(catalogue: Catalogue) -> PiiField:
    return next(f for f in catalogue.types["ConnectionRecorded"].pii
                if f.path == ("data", "location", "country"))


def _sealed_country(record: Record) -> bytes | None:
    location = record.data.get("location")
    return location.get("country") if isinstance(location, Mapping) else None


def connection_country(record: Record, lookup: KeyLookup | None,
                       catalogue: Catalogue | None = None) -> str:
    """The connection's country code, or ``unknown`` (absent, unreadable, not a code)."""
    return _country(record, _sealed_country(record), lookup,
                    _country_field(catalogue or load_catalogue()))


def _country(record: Record, sealed: bytes | None, lookup: KeyLookup | None,
             field: PiiField) -> str:
    if sealed is None or lookup is None:
        return UNKNOWN
    value = open_field(record.type, record.event_id, record.subject_id, record.occurred_at,
                       field, sealed, lookup)
    return value if isinstance(value, str) and _COUNTRY.fullmatch(value) else UNKNOWN


# --- the hook -----------------------------------------------------------------------------


def _member_token(key: bytes, group: Group, subkeys: dict[bytes, bytes] | None = None) -> str:
    """``k:`` + HMAC(HMAC(key, label), group); ``subkeys`` keeps the inner HMAC per key."""
    sub = subkeys.get(key) if subkeys is not None else None
    if sub is None:
        sub = hmac.digest(key, _TOKEN_LABEL, "sha256")
        if subkeys is not None:
            subkeys[key] = sub
    label = "\x1f".join((group.measure, group.period.isoformat(), group.dim1, group.dim2))
    return "k:" + hmac.digest(sub, label.encode(), "sha256").hex()  # one-shot: no object


def _location_ref(record: Record) -> KeyRef:
    return KeyRef(record.subject_id, "location", key_period("location", record.occurred_at))


def location_refs(records: list[Record]) -> set[KeyRef]:
    """The location keys the connections of ``records`` were sealed with."""
    return {_location_ref(r) for r in records
            if r.type == "ConnectionRecorded" and _sealed_country(r) is not None}


def tally(records: list[Record], keys: Mapping[tuple[KeyRef, int], bytes],
          catalogue: Catalogue) -> tuple[dict[Group, list[int]], set[tuple[Group, str]]]:
    """What ``records`` add to the analytics, given the location keys that exist: per group
    [events, granted], and the (group, member) pairs behind its distinct-subject count.

    The one rule for the live hook (a batch) and a rebuild (a whole partition at once)."""
    lookup, field = lookup_from(keys), _country_field(catalogue)
    counts: dict[Group, list[int]] = {}
    members: set[tuple[Group, str]] = set()
    subkeys: dict[bytes, bytes] = {}
    for record in records:
        country, token_key = UNKNOWN, None
        if record.type == "ConnectionRecorded":
            sealed = _sealed_country(record)
            country = _country(record, sealed, lookup, field)
            if country != UNKNOWN:
                token_key = keys.get((_location_ref(record), sealed_version(sealed or b"")))
        for group, events, granted in contributions(record, country):
            c = counts.setdefault(group, [0, 0])
            c[0] += events
            c[1] += granted
            member = (_member_token(token_key, group, subkeys) if token_key is not None
                      else "s:" + record.subject_id)
            members.add((group, member))
    return counts, members


def make_hook(master_key: bytes, catalogue: Catalogue | None = None) -> Hook:
    """The analytics hook for ``apply_batch``: ``async (cursor, outcome) -> None``.

    ``master_key`` unwraps location keys to read the country of connections (only that leaf).
    A `ReadingHook`: those keys are read with the batch's own reads, before the fold.
    """
    if len(master_key) != 32:
        raise ValueError("the master key is 32 bytes")
    cat = catalogue or load_catalogue()

    async def read_location_keys(cur: psycopg.AsyncCursor, items: object,
                                 records: list[Record]) -> bool:
        return await send_wrapped_keys(cur, location_refs(records))

    async def write_analytics(cur: psycopg.AsyncCursor, outcome: Outcome, rows: Rows) -> None:
        records = [record for _, record in outcome.applied]
        if not records:
            return
        keys, failed = unwrap_rows(master_key, rows)
        if failed:  # counted as unknown: never fail the batch (it would dead-letter it)
            log.warning("location keys do not unwrap; countries counted as unknown", keys=failed)
        counts, members = tally(records, keys, cat)
        fresh = await _insert_members(cur, sorted(members))
        groups = sorted(counts)
        await cur.execute(
            "INSERT INTO projections.analytics_totals AS t"
            " (measure, period, dim1, dim2, events, granted, subjects)"
            " SELECT * FROM unnest(%b::text[], %b::date[], %b::text[], %b::text[],"
            " %b::bigint[], %b::bigint[], %b::bigint[])"
            " ON CONFLICT (measure, period, dim1, dim2) DO UPDATE SET"
            " events = t.events + EXCLUDED.events, granted = t.granted + EXCLUDED.granted,"
            " subjects = t.subjects + EXCLUDED.subjects",
            ([g.measure for g in groups], [g.period for g in groups],
             [g.dim1 for g in groups], [g.dim2 for g in groups],
             [counts[g][0] for g in groups], [counts[g][1] for g in groups],
             [fresh.get(g, 0) for g in groups]),
        )

    return ReadingHook(read_location_keys, write_analytics)


async def _insert_members(cur: psycopg.AsyncCursor,
                          members: list[tuple[Group, str]]) -> Counter[Group]:
    """Insert membership rows; how many subjects are new in each group (counted by
    PostgreSQL: one row per group comes back, not one per new member)."""
    await cur.execute(
        "WITH fresh AS (INSERT INTO projections.analytics_members"
        " (measure, period, dim1, dim2, member)"
        " SELECT * FROM unnest(%b::text[], %b::date[], %b::text[], %b::text[], %b::text[])"
        " ON CONFLICT DO NOTHING RETURNING measure, period, dim1, dim2)"
        " SELECT measure, period, dim1, dim2, count(*) FROM fresh GROUP BY 1, 2, 3, 4",
        ([g.measure for g, _ in members], [g.period for g, _ in members],
         [g.dim1 for g, _ in members], [g.dim2 for g, _ in members],
         [m for _, m in members]),
    )
    return Counter({Group(m, p, d1, d2): n for m, p, d1, d2, n in await cur.fetchall()})

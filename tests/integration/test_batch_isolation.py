"""A batch the database refuses because of one event: that event alone is dead-lettered.

`projections.ledger.LedgerProjections.apply` retries such a batch one event at a time; the
event that fails on its own is written as a dead letter without being read or folded again
(whatever part of it the database refused), and the others are applied. Real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.catalogue import topic_name
from events.codec import encode, key_refs
from events.keystore import KeyStore
from events.model import new_event
from processors.rules.fold import ViewFold
from processors.rules.policy import Policy
from projections.ledger import LedgerProjections
from projections.writer import Incoming, Outcome

pytestmark = pytest.mark.integration
TOPIC = topic_name("ledger")
NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)


def _items(keystore: KeyStore, subjects: list[str]) -> list[Incoming]:
    events = [new_event("DocumentIssued", s, {"kind": "invoice", "document_ref": f"F-{i}"},
                        NOW, "website-test")
              for i, s in enumerate(subjects)]
    keys = keystore.keys_for_writing({r for e in events for r in key_refs(e)})
    return [Incoming(TOPIC, 0, offset, e.subject_id.encode(), encode(e, keys), (), 0)
            for offset, e in enumerate(events)]


def test_an_event_that_breaks_its_batch_is_dead_lettered_alone(
        database_url: str, keystore: KeyStore) -> None:
    items = _items(keystore, ["acc-100001", "acc-100002", "acc-100003"])
    broken = items[1]

    async def refuse_the_second(cur: psycopg.AsyncCursor, out: Outcome) -> None:
        # a projection whose statement fails for this event only (as a constraint would)
        if any(item is broken for item, _ in out.applied):
            await cur.execute("SELECT 1 / 0")

    async def run() -> Outcome:
        ledger = LedgerProjections(database_url, "w-test", ViewFold(Policy()),
                                   [refuse_the_second], Policy(), lambda: NOW,
                                   Ed25519PrivateKey.generate())
        try:
            return await ledger.apply(items)
        finally:
            await ledger.close()

    out = asyncio.run(run())
    assert [(i.offset, reason, kind) for i, reason, kind in out.dead] == [
        (1, "could not be applied (DivisionByZero)", "DocumentIssued")]
    with psycopg.connect(database_url) as conn:
        views = {s for (s,) in conn.execute("SELECT subject_id FROM projections.customer_view")}
        letters = conn.execute('SELECT "offset", event_type, reason'
                               " FROM projections.dead_letters").fetchall()
        position = conn.execute("SELECT next_offset FROM projections.offsets"
                                " WHERE consumer = 'ledger'").fetchone()
    assert views == {"acc-100001", "acc-100003"}
    assert letters == [(1, "DocumentIssued", "could not be applied (DivisionByZero)")]
    assert position == (3,)

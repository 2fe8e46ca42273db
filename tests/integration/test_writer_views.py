"""The batch writer's views against a real PostgreSQL: a subject with several events in one
batch (one of them refused, one a duplicate) gets the view of exactly its applied events, in
log order, and the batch's outcome reads back the views it wrote; whether the views go out
in one statement at the end or in chunks sent while the fold goes on (pipeline mode)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from events.codec import decode
from processors.rules.fold import ViewFold
from processors.rules.policy import Policy
from projections import writer
from projections.writer import Outcome, WrittenViews, apply_batch
from tests.integration.test_analytics import Ledger, account, connection, consent

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _apply(database_url: str, items: list[Any]) -> Outcome:
    async def run() -> Outcome:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await apply_batch(conn, items, ViewFold(Policy()), archive=False)
    return asyncio.run(run())


def _stored(database_url: str) -> dict[str, tuple[str, dict[str, Any]]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT subject_id, status, doc::text"
                            " FROM projections.customer_view").fetchall()
    return {s: (status, orjson.loads(doc)) for s, status, doc in rows}


def _folded(items: list[Any]) -> dict[str, Any]:
    """The reference: the fold of these records, one after the other."""
    fold, view = ViewFold(Policy()), None
    for item in items:
        view = fold(view, decode(item.value), None)
    assert view is not None
    return view


@pytest.mark.parametrize("chunk", [1, 2, writer.VIEW_CHUNK])
def test_a_batch_writes_each_subject_view_of_its_applied_events_in_order(
        database_url, keystore, monkeypatch, chunk):
    monkeypatch.setattr(writer, "VIEW_CHUNK", chunk)  # 1: each view sent as soon as folded
    ledger = Ledger(keystore)
    first = ledger.items([account("s-a", T0), account("s-b", T0)])
    assert not _apply(database_url, first).dead

    a_connects, a_consents = (connection("s-a", T0 + timedelta(minutes=5), "FR"),
                              consent("ConsentGiven", "s-a", T0 + timedelta(minutes=9),
                                      ["marketing", "optimisation"]))
    second = ledger.items([
        a_connects,
        account("s-a", T0 + timedelta(minutes=6)),  # refused: s-a has a live account
        connection("s-b", T0 + timedelta(minutes=7), "BE"),
        a_consents,
        account("s-c", T0 + timedelta(minutes=8)),  # a new subject, its only event
    ])
    second.append(first[0]._replace(offset=ledger.offset))  # s-a's account again: a duplicate
    ledger.offset += 1
    out = _apply(database_url, second)

    assert [reason for _, reason, _ in out.dead] == [
        "subject_id: the subject already has a live account"]
    assert out.duplicates == 1
    assert len(out.applied) == 4
    expected = {"s-a": _folded([first[0], second[0], second[3]]),
                "s-b": _folded([first[1], second[2]]),
                "s-c": _folded([second[4]])}
    assert _stored(database_url) == {s: ("active", v) for s, v in expected.items()}
    assert expected["s-a"]["counts"]["connections"] == 1
    assert set(expected["s-a"]["consents"]) == {"marketing", "optimisation"}

    # the outcome reads back what it wrote, for the hooks that need a view
    assert isinstance(out.views, WrittenViews)
    assert sorted(out.views) == ["s-a", "s-b", "s-c"] and "s-d" not in out.views
    assert {s: out.views[s] for s in out.views} == expected


def test_written_views_merge_another_batch_or_plain_views():
    views, other = WrittenViews(), WrittenViews()
    views.add("s-a", {"status": "active", "n": 1})
    other.add("s-a", {"status": "deleted", "n": 2})
    other.add("s-b", {"status": "active", "n": 3})
    views.update(other)
    views.update({"s-c": {"status": "erased", "n": 4}})
    assert dict(views) == {"s-a": {"status": "deleted", "n": 2},
                           "s-b": {"status": "active", "n": 3},
                           "s-c": {"status": "erased", "n": 4}}
    assert views.statuses == {"s-a": "deleted", "s-b": "active", "s-c": "erased"}
    assert list(views.docs) == list(views.statuses)


_COUNT_VIEWS = ("SELECT count(*) FROM projections.customer_view"
                " WHERE subject_id = ANY(%s)")


def test_a_reading_hook_reads_before_the_fold_and_gets_its_rows_after_it(database_url,
                                                                       keystore):
    """`apply_batch` sends a ReadingHook's read with its own, before the fold writes a view:
    its rows are of the database before the batch, and its write runs with the other hooks.
    Called on its own (no read ahead), the hook reads then; with nothing to ask, no rows."""
    ledger = Ledger(keystore)
    items = ledger.items([account("s-a", T0), account("s-b", T0)])
    seen: list[tuple[Any, ...]] = []

    async def read(cur: Any, fresh: Any, records: list[Any]) -> bool:
        if not records:
            return False
        await cur.execute(_COUNT_VIEWS, (sorted({r.subject_id for r in records}),))
        return True

    async def write(cur: Any, out: Outcome, rows: list[tuple[Any, ...]]) -> None:
        await cur.execute(_COUNT_VIEWS, (["s-a", "s-b"],))
        seen.append((len(out.applied), [r[0] for r in rows], (await cur.fetchone())[0]))

    hook = writer.ReadingHook(read, write)

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            out = await apply_batch(conn, items, ViewFold(Policy()), archive=False,
                                    hooks=[hook])
            async with conn.transaction(), conn.cursor() as cur:
                await hook(cur, out)  # on its own: reads now, after the batch
                await hook(cur, Outcome())  # nothing applied: nothing to ask

    asyncio.run(run())
    assert seen == [(2, [0], 2), (2, [2], 2), (0, [], 2)]

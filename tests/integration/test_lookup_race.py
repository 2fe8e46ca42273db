"""The lookup index and a concurrent destruction of the contact key, on real PostgreSQL.

A batch writing a subject's index rows (`projections.lookup` hook) and a sweep destroying that
subject's contact key (`projections.erasure_store.carry_out`, on its own connection, as the
processors' timers run it) overlap both ways round, both as the processors' login (with its
privileges only); whichever starts first, once both have committed the index names the
subject no more.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.catalogue import topic_name
from events.codec import decode, encode, key_refs
from events.keystore import KeyStore
from events.model import Event, new_event
from processors.rules.fold import ViewFold
from processors.rules.policy import Policy
from projections.erasure_store import carry_out
from projections.lookup import make_hook
from projections.roles import PROCESSOR, ensure_login
from projections.writer import Incoming, Outcome, apply_batch

pytestmark = pytest.mark.integration

SUBJECT = "acc-race-01"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _events() -> list[Event]:
    created = new_event("AccountCreated", SUBJECT, {
        "gender": "other", "last_name": "Canarivaux", "first_name": "Zéphyrine",
        "email": "zephyrine@exemple-canari.fr",
        "postal_address": {"line1": "17 rue des Canaris", "postal_code": "69400",
                           "city": "Villefranche-Canari", "country": "FR"},
        "over_15": True, "notice_version": "2026-02"}, T0, "website-accounts")
    deleted = new_event("AccountDeleted", SUBJECT, {"requested_by": "subject"},
                        T0.replace(hour=10), "website-accounts")
    updated = new_event("AccountUpdated", SUBJECT, {"email": "z.nouvelle@exemple-canari.fr"},
                        T0.replace(hour=11), "website-accounts")
    return [created, deleted, updated]


def _items(keystore: KeyStore, events: Iterable[Event], first: int) -> list[Incoming]:
    events = list(events)
    keys = keystore.keys_for_writing({r for e in events for r in key_refs(e)})
    return [Incoming(topic_name("ledger"), 0, first + i, SUBJECT.encode(), encode(e, keys), (),
                     int(e.occurred_at.timestamp() * 1000)) for i, e in enumerate(events)]


async def _waiting_for_a_lock(conn: psycopg.AsyncConnection, pid: int) -> bool:
    """Whether the backend ``pid`` waits for a lock (polled for up to 5 s)."""
    for _ in range(100):
        row = await (await conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))).fetchone()
        if row and row[0] == "Lock":
            return True
        await asyncio.sleep(0.05)
    return False


async def _race(database_url: str, master_key: bytes, keystore: KeyStore,
                sweep_first: bool) -> int:
    """Index rows naming the subject once the batch and the sweep have both committed."""
    created, deleted, updated = _events()
    hook = make_hook(master_key)
    processor = ensure_login(database_url, PROCESSOR, "registre_test_racer",
                             secrets.token_urlsafe(18))
    connect = psycopg.AsyncConnection.connect
    async with await connect(processor, autocommit=True) as batch, \
            await connect(processor, autocommit=True) as timer, \
            await connect(database_url, autocommit=True) as watch:
        out = await apply_batch(batch, _items(keystore, [created, deleted], 0),
                                ViewFold(Policy()), hooks=[hook], archive=False)
        assert not out.dead
        doc = (await (await watch.execute(
            "SELECT doc FROM projections.customer_view WHERE subject_id = %s",
            (SUBJECT,))).fetchone())[0]
        item = _items(keystore, [updated], 2)[0]
        later = Outcome(applied=[(item, decode(item.value))])

        async def sweep() -> None:
            async with timer.transaction(), timer.cursor() as cur:
                await carry_out(cur, doc, Policy(), datetime.now(UTC),
                                Ed25519PrivateKey.generate())
                if sweep_first:  # destroyed, not committed: the batch reads now
                    await asyncio.sleep(0.5)

        async def write_index() -> None:
            async with batch.transaction(), batch.cursor() as cur:
                await hook(cur, later)
                if not sweep_first:  # index written, not committed: the sweep runs now
                    assert await _waiting_for_a_lock(watch, timer.info.backend_pid)

        if sweep_first:
            sweeping = asyncio.create_task(sweep())
            await asyncio.sleep(0.2)
            await write_index()
            await sweeping
        else:
            writing = asyncio.create_task(write_index())
            await asyncio.sleep(0.2)
            await sweep()
            await writing
        gone = await (await watch.execute(
            "SELECT count(*) FROM keystore.data_keys WHERE subject_id = %s"
            " AND category = 'contact'", (SUBJECT,))).fetchone()
        assert gone[0] == 0  # the sweep did destroy the contact key
        rows = await (await watch.execute(
            "SELECT count(*) FROM projections.contact_lookup WHERE subject_id = %s",
            (SUBJECT,))).fetchone()
        return rows[0]


@pytest.mark.parametrize("sweep_first", [False, True], ids=["batch-first", "sweep-first"])
def test_the_index_names_no_subject_whose_contact_key_a_concurrent_sweep_destroyed(
        database_url: str, master_key: bytes, keystore: KeyStore, sweep_first: bool) -> None:
    assert asyncio.run(_race(database_url, master_key, keystore, sweep_first)) == 0

"""Carrying out erasure and retention in PostgreSQL, inside the caller's transaction.

`enforce_hook` runs in the processors' batch transaction: when an account is deleted or erased,
or a hold released, the keys the policy does not keep are deleted from the key store in the
same transaction that shows the subject deleted, and the ledger's own record of it goes to the
outbox. Destroying the contact key also deletes the subject's rows of the keyed lookup index
(`projections.lookup`), in that same transaction. `sweep` does the same for everything that
falls due with time. `record_hook` keeps the erasure facts of the log (a projection, rebuilt
like the others).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.types.json import Jsonb

from events.keys import KeyRef
from events.keystore import (
    destroy_in,
    lock_subject_keys,
    mark_erased_in,
    subjects_with_keys_before,
)
from events.model import Event
from processors.rules.erasure import (
    END_TRIGGERS,
    ENFORCE_TRIGGERS,
    consent_expiries,
    erasure_certificate,
    keys_destroyed,
    plan,
)
from processors.rules.policy import Policy
from processors.rules.timeutil import add_months, period_of
from projections import outbox, problems
from projections.lookup import forget_in
from projections.writer import PROJECTION_LOCK, Hook, Outcome

Clock = Callable[[], datetime]
log = structlog.get_logger("registre.erasure")
RECORD_RESET_SQL = ("DELETE FROM projections.erasures",)


async def carry_out(cur: psycopg.AsyncCursor, doc: dict[str, Any], policy: Policy,
                    now: datetime, signer: Ed25519PrivateKey,
                    trigger: Event | None = None) -> list[Event]:
    """Destroy what is due for one subject now; queue the log records, signed with
    ``signer`` (the ledger's key). Returns them."""
    subject = doc["subject_id"]
    # shared with other writers, exclusive for a rebuild's swap: it sees every destruction
    await cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (PROJECTION_LOCK,))
    keys = await lock_subject_keys(cur, subject)
    p = plan(doc, keys, policy, now)
    if p.mark_erased:
        await mark_erased_in(cur, subject, now)
    by_reason: dict[str, list[KeyRef]] = {}
    for d in p.decision.destroy:
        by_reason.setdefault(d.reason, []).append(d.ref)
    for reason, refs in by_reason.items():
        await destroy_in(cur, refs, now, reason)
    if any(d.ref.category == "contact" for d in p.decision.destroy):
        # the lookup index forgets with the contact key, after it: a batch that read the key
        # (under the subject's key lock, shared) has committed by then, and this delete sees
        # the rows it wrote
        await forget_in(cur, subject)
    events = [e for e in [keys_destroyed(p, now, trigger.event_id if trigger else None)] if e]
    if trigger is not None and trigger.type in END_TRIGGERS:
        events.append(erasure_certificate(p, now, trigger.event_id))
    events += consent_expiries(doc, now, policy)
    await outbox.add(cur, events, signer)
    return events


async def carry_out_or_record(cur: psycopg.AsyncCursor, doc: dict[str, Any], policy: Policy,
                              now: datetime, signer: Ed25519PrivateKey, job: str,
                              trigger: Event | None = None) -> list[Event]:
    """`carry_out` in a savepoint: a failure is rolled back and recorded as the subject's
    problem (retried later, shown to operators) instead of failing anyone else's work."""
    subject = doc["subject_id"]
    try:
        async with cur.connection.transaction():
            events = await carry_out(cur, doc, policy, now, signer, trigger)
    except psycopg.OperationalError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is this subject's problem
        owed = (trigger.event_id, trigger.type) if trigger and trigger.type in END_TRIGGERS \
            else None
        await problems.record(cur, subject, job, exc, now, owed)
        log.warning("subject not processed, recorded as a problem", subject_id=subject,
                    job=job, reason=problems.reason_of(exc))
        return []
    await problems.resolved(cur, subject)
    return events


def enforce_hook(policy: Policy, clock: Clock, signer: Ed25519PrivateKey) -> Hook:
    """Erasure at once: the batch that applies a deletion also destroys the keys."""

    async def enforce_erasure(cur: psycopg.AsyncCursor, out: Outcome) -> None:
        done: set[str] = set()
        for _, record in reversed(out.applied):
            if record.type not in ENFORCE_TRIGGERS or record.subject_id in done:
                continue
            done.add(record.subject_id)
            trigger = Event(record.event_id, record.type, record.subject_id,
                            record.occurred_at, record.source, record.data)
            # the processors' clock, never the event's time: a deletion or a release dated
            # in the future acts as of now and makes nothing fall due early
            await carry_out_or_record(cur, out.views[record.subject_id], policy, clock(),
                                      signer, "erasure", trigger)

    return enforce_erasure


def _json_data(record: Any) -> dict[str, Any]:
    event = Event(record.event_id, record.type, record.subject_id, record.occurred_at,
                  record.source, record.data)
    return json.loads(json.dumps(event.to_json()["data"], default=str))


def erasure_rows(out: Outcome) -> list[tuple[Any, ...]]:
    """(subject, event id, kind, instant, body) of the erasure facts among the applied."""
    return [(r.subject_id, r.event_id, r.type, r.occurred_at, Jsonb(_json_data(r)))
            for _, r in out.applied if r.type in ("ErasureCompleted", "KeysDestroyed")]


async def record_erasure_facts(cur: psycopg.AsyncCursor, out: Outcome) -> None:
    rows = erasure_rows(out)
    if rows:
        await cur.executemany(
            "INSERT INTO projections.erasures (subject_id, event_id, kind, occurred_at, body)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)


SWEEP_CANDIDATES_SQL = """
SELECT v.subject_id, v.doc FROM projections.customer_view v
WHERE v.status <> 'active'
   OR v.subject_id = ANY(%(keyed)s)
   OR jsonb_path_exists(v.doc::jsonb,
                        '$.consents.* ? ((@.status == "granted" || @.status == "refused")
                                         && @.at <= $limit)',
                        jsonb_build_object('limit', %(limit)s::text))
ORDER BY v.subject_id
"""


async def sweep(conn: psycopg.AsyncConnection, policy: Policy, now: datetime,
                signer: Ed25519PrivateKey) -> list[Event]:
    """Destroy everything due at ``now`` and expire consents; one transaction per subject.

    Idempotent: what was destroyed is gone, what expired is marked, and the recorded events
    have ids derived from what they record.
    """
    cutoff = period_of(add_months(now, -policy.connection_location_months))
    # choices made by then may have expired (a day's margin: the text of an instant does not
    # sort like the instant; `consent_expiries` decides exactly)
    chosen_by = add_months(now, -policy.consent_validity_months) + timedelta(days=1)
    async with conn.cursor() as cur:
        keyed = await subjects_with_keys_before(cur, cutoff)
        await cur.execute(SWEEP_CANDIDATES_SQL, {
            "keyed": keyed, "limit": chosen_by.strftime("%Y-%m-%dT%H:%M:%S")})
        candidates = await cur.fetchall()
    events: list[Event] = []
    for _, doc in candidates:
        async with conn.transaction(), conn.cursor() as cur:
            events += await carry_out_or_record(cur, doc, policy, now, signer, "sweep")
    return events


async def retry_problems(conn: psycopg.AsyncConnection, policy: Policy, now: datetime,
                         signer: Ed25519PrivateKey) -> list[Event]:
    """Try again every subject with an open problem; a success clears it (and an erasure
    certificate still owed is issued then)."""
    async with conn.cursor() as cur:
        owed = await problems.pending(cur)
        if not owed:
            return []
        await cur.execute("SELECT subject_id, doc FROM projections.customer_view"
                          " WHERE subject_id = ANY(%s) ORDER BY subject_id", (sorted(owed),))
        docs = await cur.fetchall()
    events: list[Event] = []
    for subject, doc in docs:
        trigger = owed[subject]
        event = (Event(trigger[0], trigger[1], subject, now, "registre", {})
                 if trigger else None)
        async with conn.transaction(), conn.cursor() as cur:
            events += await carry_out_or_record(cur, doc, policy, now, signer,
                                                "erasure" if trigger else "sweep", event)
    return events

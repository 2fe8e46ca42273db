"""The compliance desk: every question and action of domain.md, one JSON document each.

The command line and the web service both go through `Compliance`, so an answer is the same
document whichever door it is asked at. It is given a context (`registre.bootstrap.Registre`
fits) for the adapters, the loaded policy and the clock, and the name of who asks: a
restricted read is recorded in the access log under that name before anything is decrypted.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from events.keystore import KeyStore
from events.model import format_instant
from events.publisher import Publisher
from processors.rules.policy import Policy
from projections.access_log import checked_case, record_access
from projections.queries import applied, customer_view
from registre.services import audit, erasure, export, lookup, timeline, views
from registre.services import requests as data_requests
from registre.services.audit import UnknownSubject, check_purpose, check_subject
from registre.services.verify import verify_document

Doc = dict[str, Any]


class Context(Protocol):
    """What the desk needs from the composition root."""

    policy: Policy
    clock: Callable[[], datetime]
    master_key: bytes
    signing_key: Ed25519PrivateKey

    @property
    def kafka(self) -> str: ...
    def url(self, role: str) -> str: ...
    def connect(self, role: str = "compliance"
                ) -> AbstractContextManager[psycopg.Connection]: ...
    def keystore(self, cache_seconds: float = 0.0, role: str = "publisher"
                 ) -> AbstractContextManager[KeyStore]: ...
    def publisher(self, allow_registre: bool = False) -> Publisher: ...


class Compliance:
    """Questions and actions for one reader (a person or a token name)."""

    def __init__(self, ctx: Context, reader: str) -> None:
        self.ctx = ctx
        self.reader = reader

    @property
    def policy(self) -> Policy:
        return self.ctx.policy

    # --- the customer view ---------------------------------------------------------------------

    def view(self, subject: str, case: str | None = None) -> Doc:
        """The current customer view (no personal field once the account has ended).

        With ``case`` (the web service always gives one) the read is recorded in the access log
        before anything is decrypted.
        """
        check_subject(subject)
        with self.ctx.connect() as conn:
            doc = customer_view(conn, subject)
            if doc is None:
                raise UnknownSubject(f"{subject}: no such subject in the customer view")
            if case is not None:
                record_access(conn, self.reader, subject, case, "customer view",
                              self.ctx.clock())
        with self.ctx.keystore() as keystore:
            return views.render(doc, keystore, self.ctx.clock(), self.policy)

    def summary(self, subject: str) -> Doc:
        """The customer view without any personal field (nothing decrypted, so no case and no
        access-log entry): status, consents, authorisations, holds, documents, dates."""
        check_subject(subject)
        with self.ctx.connect() as conn:
            doc = customer_view(conn, subject)
        if doc is None:
            raise UnknownSubject(f"{subject}: no such subject in the customer view")
        return views.summary(doc, self.ctx.clock(), self.policy)

    def applied(self, event_id: str) -> bool:
        """Whether the processors have applied the event of that id (a published action shows
        in the answers once they have)."""
        with self.ctx.connect() as conn:
            return applied(conn, event_id)

    def retained(self, subject: str, case: str | None) -> Doc:
        """What is retained after deletion (compliance only; the read is recorded first)."""
        check_subject(subject)
        case = checked_case(case)
        with self.ctx.connect() as conn, self.ctx.keystore() as keystore:
            return erasure.read_retained(conn, keystore, subject, self.reader, case,
                                         self.ctx.clock(), self.policy)

    # --- questions -----------------------------------------------------------------------------

    def consent(self, subject: str, purpose: str, at: datetime) -> Doc:
        check_subject(subject)
        check_purpose(purpose)
        with self.ctx.connect() as conn:
            return audit.consent(conn, subject, purpose, at, self.policy)

    def disclosures(self, subject: str) -> list[Doc]:
        check_subject(subject)
        return audit.disclosures(self.ctx.kafka, subject, self.policy, self.ctx.clock())

    def erasure(self, subject: str) -> Doc:
        check_subject(subject)
        with self.ctx.connect() as conn, self.ctx.keystore() as keystore:
            return erasure.erasure_report(conn, keystore, subject, self.policy, self.ctx.clock())

    def as_of(self, subject: str, at: datetime, case: str | None) -> Doc:
        check_subject(subject)
        case = checked_case(case)
        with self.ctx.connect() as conn, self.ctx.keystore() as keystore:
            return audit.as_of(self.ctx.kafka, conn, keystore, subject, at, case, self.reader,
                               self.ctx.clock(), self.policy)

    def export(self, subject: str, case: str | None) -> Doc:
        check_subject(subject)
        with self.ctx.connect() as conn, self.ctx.keystore() as keystore:
            return export.export(self.ctx.kafka, conn, keystore, subject, self.ctx.clock(),
                                 self.reader, case, self.policy)

    def timeline(self, subject: str, case: str | None) -> Doc:
        """Every event of the subject, decrypted where its key exists (recorded first)."""
        check_subject(subject)
        case = checked_case(case)
        with self.ctx.connect() as conn, self.ctx.keystore() as keystore:
            return timeline.timeline(self.ctx.kafka, conn, keystore, subject, case, self.reader,
                                     self.ctx.clock())

    def lookup(self, email: str | None = None, phone: str | None = None) -> Doc:
        """The subjects holding that email or phone, from the keyed lookup index."""
        with self.ctx.connect() as conn:
            return lookup.lookup(conn, self.ctx.master_key, email, phone)

    def schedule(self, days: int, now: datetime | None = None) -> Doc:
        if days < 0:
            raise audit.BadQuestion(f"--days must be 0 or more, got {days}")
        with self.ctx.connect() as conn, self.ctx.keystore() as keystore:
            return erasure.schedule(conn, keystore, now or self.ctx.clock(), days, self.policy)

    def verify(self, public_key: Ed25519PublicKey | None = None) -> Doc:
        """The integrity of the whole log, against ``public_key`` (an auditor's copy) or the
        key the ledger signs with."""
        trusted = public_key or self.ctx.signing_key.public_key()
        return verify_document(self.ctx.kafka, self.ctx.url("compliance"), trusted)

    # --- actions -------------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None, allow_future: bool = False) -> Doc:
        """Destroy what has fallen due as of ``now`` (default: the clock). A ``now`` later than
        the clock destroys data early: refused unless ``allow_future`` (drills, tests)."""
        clock = self.ctx.clock()
        if now is not None and now > clock and not allow_future:
            raise audit.BadQuestion(
                f"--now {format_instant(now)} is later than the current time"
                f" ({format_instant(clock)}): that would destroy data before it falls due;"
                " give --allow-future for a drill")
        with self.ctx.publisher() as publisher:
            return erasure.sweep_now(self.ctx.url("processor"), publisher, self.policy,
                                     now or clock, self.ctx.signing_key)

    def place_hold(self, subject: str, case: str, reason: str,
                   categories: list[str] | None = None) -> Doc:
        check_subject(subject)
        return self._publish(erasure.hold_event(subject, case, self.ctx.clock(), reason,
                                                categories), case)

    def release_hold(self, subject: str, case: str) -> Doc:
        check_subject(subject)
        return self._publish(erasure.hold_event(subject, case, self.ctx.clock()), case)

    def request_erasure(self, subject: str, requested_by: str = "subject") -> Doc:
        """Publish ErasureRequested (art. 17): the processors destroy what the policy allows."""
        check_subject(subject)
        return self._publish(erasure.erasure_event(subject, self.ctx.clock(), requested_by))

    def _publish(self, event: Doc, case: str | None = None) -> Doc:
        with self.ctx.publisher() as publisher:
            published = publisher.publish(event)
        answer = {"published": published.type, "event_id": published.event_id,
                  "subject_id": published.subject_id}
        return answer if case is None else {**answer, "case_ref": case}

    # --- data-subject requests (`registre.services.requests`) --------------------------------

    def open_request(self, subject: str, kind: str, channel: str, identity_verified: bool = False,
                     received_at: datetime | None = None) -> Doc:
        with self.ctx.publisher() as publisher:
            return data_requests.open_request(publisher, self.policy, subject, kind, channel,
                                              identity_verified, self.ctx.clock(), received_at)

    def extend_request(self, request_id: str, months: int, reason: str) -> Doc:
        with self.ctx.connect() as conn, self.ctx.publisher() as publisher:
            return data_requests.extend_request(conn, publisher, self.policy, request_id,
                                                months, reason, self.ctx.clock())

    def complete_request(self, request_id: str, outcome: str, reason: str | None = None) -> Doc:
        with self.ctx.connect() as conn, self.ctx.publisher() as publisher:
            return data_requests.complete_request(conn, publisher, request_id, outcome, reason,
                                                  self.ctx.clock())

    def requests(self, status: str | None = None, subject: str | None = None) -> Doc:
        with self.ctx.connect() as conn:
            return data_requests.list_requests(conn, self.ctx.clock(), status, subject)

    def request(self, request_id: str) -> Doc:
        with self.ctx.connect() as conn:
            return data_requests.show_request(conn, request_id, self.ctx.clock())

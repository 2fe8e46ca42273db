"""The publisher API that website services call: validate, encrypt, encode, produce.

kafka-python with ``acks="all"`` and idempotence; the subject id is the Kafka key (all events
of a subject stay ordered); headers carry only the event type and the schema fingerprint.
A rejected event publishes nothing and says which field and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from events.catalogue import Catalogue, EventType, load_catalogue, per_type, topic_name
from events.codec import MAX_MESSAGE, encode, key_refs
from events.journal import Journal, JournalClosed, Row
from events.keystore import KeyStore
from events.model import Event
from events.sealing import KeyRing
from events.validation import InvalidEvent, parse_event

log = structlog.get_logger("registre.publisher")

TYPE_HEADER = "registre-type"
SCHEMA_HEADER = "registre-schema"


DEFAULT_TIMEOUT = 5.0  # seconds a publish waits for the broker or the database


class PublishError(Exception):
    """The broker did not acknowledge: nothing can be said to be published."""


@dataclass
class PublishReport:
    published: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, "field: reason")
    redacted: list[int] = field(default_factory=list)  # indexes stored with personal fields
    # redacted: their subject was erased, no key may be created for it (domain.md)


ENDED = ("the account of this subject ended (deleted or erased): a new account needs a new"
         " subject_id")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@per_type
def _shared_headers(etype: EventType) -> list[tuple[str, bytes]]:
    """The headers of every message of that type: one list, which kafka-python only reads."""
    return [(TYPE_HEADER, etype.name.encode()), (SCHEMA_HEADER, etype.fingerprint.hex().encode())]


def headers_for(event_type: str, catalogue: Catalogue) -> list[tuple[str, bytes]]:
    return list(_shared_headers(catalogue.types[event_type]))


def _producer(bootstrap: str, timeout: float) -> KafkaProducer:
    """A producer that gives up within ``timeout`` seconds, with one PublishError."""
    ms = int(timeout * 1000)
    try:
        return KafkaProducer(
            bootstrap_servers=bootstrap, client_id="registre-publisher", acks="all",
            enable_idempotence=True, linger_ms=5, max_block_ms=ms, bootstrap_timeout_ms=ms,
            request_timeout_ms=ms, delivery_timeout_ms=ms + 5, retry_backoff_ms=100,
            max_request_size=2 * MAX_MESSAGE)
    except KafkaError as exc:
        raise PublishError(f"broker {bootstrap} unreachable ({type(exc).__name__})") from None


class Publisher:
    """Publish events to the ledger. Use as a context manager: close() flushes.

    The acknowledgement is durable either way: with ``journal`` (the embedded default) the
    records are committed to PostgreSQL before ``publish`` returns and the relay of
    `registre run` hands them to the broker; without, the broker acknowledges with
    ``acks=all`` (Apache Kafka with replication). A broker or database that does not answer
    fails within ``timeout`` seconds with one PublishError naming the cause.
    """

    def __init__(
        self,
        bootstrap: str,
        keystore: KeyStore,
        catalogue: Catalogue | None = None,
        topic: str | None = None,
        allow_registre: bool = False,
        producer: KafkaProducer | None = None,
        owns_keystore: bool = False,
        clock: Callable[[], datetime] = _utc_now,
        journal: Journal | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._owns_keystore = owns_keystore
        self._clock = clock
        self.catalogue = catalogue or load_catalogue()
        self.keystore = keystore
        self.topic = topic or topic_name("ledger")
        self.allow_registre = allow_registre
        self._journal = journal
        self._timeout = timeout
        self._producer = producer or (None if journal else _producer(bootstrap, timeout))

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._producer is not None:
                self._producer.flush(timeout=self._timeout)
                self._producer.close(timeout=self._timeout)
        except KafkaError:
            pass  # nothing unacknowledged was reported as published
        finally:
            if self._journal is not None:
                self._journal.close()
            if self._owns_keystore:
                self.keystore.close()

    def _validate(self, item: Event | Mapping[str, Any], now: datetime) -> Event:
        obj = item.to_json() if isinstance(item, Event) else item
        return parse_event(obj, self.catalogue, self.allow_registre, now=now)

    def publish(self, event: Event | Mapping[str, Any]) -> Event:
        """Publish one event and wait for the broker's acknowledgement.

        Raises InvalidEvent (naming the field) for an event that must not be published.
        """
        errors, valid, ended = self._checked([event])
        if errors:
            raise errors[0][1]
        self._send([e for _, e in valid], ended)
        return valid[0][1]

    def publish_many(self, items: Iterable[Event | Mapping[str, Any]]) -> PublishReport:
        """Validate all, publish the valid ones, wait for every acknowledgement.

        Refused: an invalid event (naming its field), and an AccountCreated for a subject whose
        account ended. Reported as ``redacted``: the events about an erased subject, stored with
        their personal fields redacted.
        """
        errors, valid, ended = self._checked(items)
        report = PublishReport(rejected=[(i, str(exc)) for i, exc in errors])
        if valid:
            redacted = self._send([e for _, e in valid], ended)
            report.published = len(valid)
            report.redacted = [index for (index, _), r in zip(valid, redacted, strict=True) if r]
        log.info("published", events=report.published, rejected=len(report.rejected),
                 redacted=len(report.redacted))
        return report

    def _checked(self, items: Iterable[Event | Mapping[str, Any]]
                 ) -> tuple[list[tuple[int, InvalidEvent]], list[tuple[int, Event]], set[str]]:
        """(refusals by index, valid events by index, the subjects whose account ended),
        judged at the publisher's clock."""
        errors: list[tuple[int, InvalidEvent]] = []
        valid: list[tuple[int, Event]] = []
        now = self._clock()
        for index, item in enumerate(items):
            try:
                valid.append((index, self._validate(item, now)))
            except InvalidEvent as exc:
                errors.append((index, exc))
        ended = self.keystore.ended_subjects({e.subject_id for _, e in valid}) if valid else set()
        reopened = self._reopened(valid, ended)
        if reopened:
            errors = sorted([*errors, *((i, InvalidEvent("subject_id", ENDED)) for i in reopened)],
                            key=lambda pair: pair[0])
            valid = [(i, e) for i, e in valid if i not in reopened]
        return errors, valid, ended

    def _reopened(self, valid: list[tuple[int, Event]], ended: set[str]) -> set[int]:
        """The AccountCreated for a subject whose account ended, other than the original one
        published again (a retry: the processors apply an event id once)."""
        candidates = [(i, e) for i, e in valid
                      if e.type == "AccountCreated" and e.subject_id in ended]
        if not candidates:
            return set()
        originals = self.keystore.applied_events(e.event_id for _, e in candidates)
        return {i for i, e in candidates if e.event_id not in originals}

    def send_encoded(self, rows: Iterable[tuple[Any, str, bytes, bytes, list[tuple[str, bytes]]]]
                     ) -> None:
        """Deliver records already encoded (the outbox's: id, topic, key, value, headers)."""
        self._deliver([(None, topic, key or None, value, headers)
                       for _, topic, key, value, headers in rows])

    def _deliver(self, rows: list[Row]) -> None:
        """Make every row durable (journal, or the broker's acks) or raise PublishError."""
        if self._journal is not None:
            try:
                self._journal.append(rows)
            except JournalClosed as exc:
                raise PublishError(str(exc)) from None
            except psycopg.OperationalError as exc:
                raise PublishError(f"database unreachable ({type(exc).__name__})") from None
            return
        assert self._producer is not None
        try:
            futures = [self._producer.send(topic, key=key, value=value, headers=headers)
                       for _, topic, key, value, headers in rows]
            self._producer.flush(timeout=self._timeout)
            for fut in futures:
                fut.get(timeout=self._timeout)
        except KafkaError as exc:
            raise PublishError(f"broker did not acknowledge ({type(exc).__name__})") from None

    def _send(self, valid: list[Event], ended: set[str]) -> list[bool]:
        """Encrypt and encode every event, then produce them all and wait for the acks.

        Returns, per event, whether a personal field was written redacted: no key is used for
        a subject whose account ended (the keys it still has are kept for what it had).
        """
        needed = [key_refs(event, self.catalogue) for event in valid]
        wanted = {ref for refs in needed for ref in refs if ref.subject_id not in ended}
        found = self.keystore.keys_for_writing(wanted)
        redacted = [not refs <= found.keys() for refs in needed]
        keys = KeyRing(found)  # each key prepared once
        types = self.catalogue.types
        self._deliver([(event.event_id, self.topic, event.subject_id.encode(),
                        encode(event, keys, self.catalogue), _shared_headers(types[event.type]))
                       for event in valid])  # all encoded before any is sent
        return redacted

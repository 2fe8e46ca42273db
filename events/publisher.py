"""The publisher API that website services call: validate, encrypt, encode, produce.

kafka-python with ``acks="all"`` and idempotence; the subject id is the Kafka key (all events
of a subject stay ordered); headers carry only the event type and the schema fingerprint.
A rejected event publishes nothing and says which field and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from events.catalogue import Catalogue, EventType, load_catalogue, per_type, topic_name
from events.codec import MAX_MESSAGE, encode, key_refs
from events.keys import KeyRef
from events.keystore import KeyStore
from events.model import Event
from events.sealing import KeyRing
from events.validation import InvalidEvent, parse_event

log = structlog.get_logger("registre.publisher")

TYPE_HEADER = "registre-type"
SCHEMA_HEADER = "registre-schema"


class PublishError(Exception):
    """The broker did not acknowledge: nothing can be said to be published."""


@dataclass
class PublishReport:
    published: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, "field: reason")


@per_type
def _shared_headers(etype: EventType) -> list[tuple[str, bytes]]:
    """The headers of every message of that type: one list, which kafka-python only reads."""
    return [(TYPE_HEADER, etype.name.encode()), (SCHEMA_HEADER, etype.fingerprint.hex().encode())]


def headers_for(event_type: str, catalogue: Catalogue) -> list[tuple[str, bytes]]:
    return list(_shared_headers(catalogue.types[event_type]))


class Publisher:
    """Publish events to the ledger topic. Use as a context manager: close() flushes."""

    def __init__(
        self,
        bootstrap: str,
        keystore: KeyStore,
        catalogue: Catalogue | None = None,
        topic: str | None = None,
        allow_registre: bool = False,
        producer: KafkaProducer | None = None,
        owns_keystore: bool = False,
    ) -> None:
        self._owns_keystore = owns_keystore
        self.catalogue = catalogue or load_catalogue()
        self.keystore = keystore
        self.topic = topic or topic_name("ledger")
        self.allow_registre = allow_registre
        self._producer = producer or KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="registre-publisher",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_block_ms=10_000,
            bootstrap_timeout_ms=5_000,
            request_timeout_ms=15_000,
            max_request_size=2 * MAX_MESSAGE,
        )

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
        if self._owns_keystore:
            self.keystore.close()

    def _validate(self, item: Event | Mapping[str, Any]) -> Event:
        if isinstance(item, Event):
            return parse_event(item.to_json(), self.catalogue, self.allow_registre)
        return parse_event(item, self.catalogue, self.allow_registre)

    def publish(self, event: Event | Mapping[str, Any]) -> Event:
        """Publish one event and wait for the broker's acknowledgement.

        Raises InvalidEvent (naming the field) for an event that must not be published.
        """
        valid = self._validate(event)
        self._send([valid])
        return valid

    def publish_many(self, items: Iterable[Event | Mapping[str, Any]]) -> PublishReport:
        """Validate all, publish the valid ones, wait for every acknowledgement."""
        report = PublishReport()
        valid: list[Event] = []
        for index, item in enumerate(items):
            try:
                valid.append(self._validate(item))
            except InvalidEvent as exc:
                report.rejected.append((index, str(exc)))
        if valid:
            self._send(valid)
            report.published = len(valid)
        log.info("published", events=report.published, rejected=len(report.rejected))
        return report

    def send_encoded(self, rows: Iterable[tuple[Any, str, bytes, bytes, list[tuple[str, bytes]]]]
                     ) -> None:
        """Produce records already encoded (the outbox's: id, topic, key, value, headers) and
        wait for every acknowledgement."""
        try:
            futures = [self._producer.send(topic, key=key or None, value=value, headers=headers)
                       for _, topic, key, value, headers in rows]
            self._producer.flush()
            for fut in futures:
                fut.get(timeout=30)
        except KafkaError as exc:
            raise PublishError(f"broker did not acknowledge: {type(exc).__name__}") from None

    def _send(self, valid: list[Event]) -> None:
        """Encrypt and encode every event, then produce them all and wait for the acks."""
        refs: set[KeyRef] = set()
        for event in valid:
            refs |= key_refs(event, self.catalogue)
        keys = KeyRing(self.keystore.keys_for_writing(refs))  # each key prepared once
        encoded = [encode(event, keys, self.catalogue) for event in valid]  # all, before sending
        types = self.catalogue.types
        futures = []
        try:
            for event, value in zip(valid, encoded, strict=True):
                futures.append(self._producer.send(
                    self.topic, key=event.subject_id.encode(), value=value,
                    headers=_shared_headers(types[event.type]),
                ))
            self._producer.flush()
            for fut in futures:
                fut.get(timeout=30)
        except KafkaError as exc:
            raise PublishError(f"broker did not acknowledge: {type(exc).__name__}") from None

"""What one web process holds for its whole life: the composition root, one publisher, pools.

The Kafka producer and the key cache of a publisher are expensive, so a web process keeps one
`Publisher` (created on first use, closed at shutdown) and lends it to each request under a
lock: the publisher's key store is one database connection, which must not run two
transactions at once. Database connections, and the key stores the questions read keys
through, come from the process's pools (`registre.web.pools`). Everything else (policy, clock,
keys) comes from `registre.bootstrap.Registre`; the compliance desk takes this object as its
context.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.keystore import KeyStore
from events.publisher import Publisher, PublishReport
from processors.rules.policy import Policy
from registre.bootstrap import Registre
from registre.web.pools import Pools


class WebContext:
    """The desk's context for a web process: the Registre's adapters, one shared publisher."""

    def __init__(self, registre: Registre) -> None:
        self.registre = registre
        self._publisher: Publisher | None = None
        self._lock = threading.Lock()
        self.pools = Pools(registre.url)

    @property
    def policy(self) -> Policy:
        return self.registre.policy

    def clock(self) -> datetime:
        return self.registre.clock()

    @property
    def master_key(self) -> bytes:
        return self.registre.master_key

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return self.registre.signing_key

    @property
    def kafka(self) -> str:
        return self.registre.kafka

    def url(self, role: str) -> str:
        return self.registre.url(role)

    def connect(self, role: str = "compliance") -> AbstractContextManager[psycopg.Connection]:
        """A pooled connection as ``role``, given back when the ``with`` block ends."""
        return self.pools.connection(role)

    @contextmanager
    def keystore(self, cache_seconds: float = 0.0, role: str = "publisher"
                 ) -> Iterator[KeyStore]:
        """The key store over a pooled connection (given back, not closed, at the end)."""
        with self.pools.connection(role) as conn:
            yield KeyStore(conn, self.registre.master_key, cache_seconds)

    @contextmanager
    def publisher(self, allow_registre: bool = False) -> Iterator[Publisher]:
        """The shared publisher, for one request at a time (never the ledger's own types)."""
        if allow_registre:
            raise PermissionError("the web service publishes website events only")
        with self._lock:
            if self._publisher is None:
                self._publisher = self.registre.publisher()
            try:
                yield self._publisher
            except psycopg.OperationalError:
                self._drop()  # its key-store connection is gone: the next request opens anew
                raise

    def publish_many(self, items: Iterable[Mapping[str, Any]]) -> PublishReport:
        """`Publisher.publish_many` on the shared publisher: the one publishing code path."""
        with self.publisher() as publisher:
            return publisher.publish_many(items)

    def _drop(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.close()
            except Exception:  # noqa: BLE001 - it is being discarded because it failed
                pass

    def close(self) -> None:
        """Flush and close the publisher, then the pools (at shutdown)."""
        with self._lock:
            self._drop()
        self.pools.close()

"""The composition root: one place builds everything registre runs from the settings.

`Registre(settings)` gives the policy, the clock, the master key, the key store, the publisher,
the view fold, the projection hooks, the batch applier of the processors and the worker's
settings. The worker (`registre.worker`), `registre rebuild`, every CLI command, the demo and
the tests build what they use here, so that a rule or an adapter is wired in one place.
Nothing is opened before it is asked for.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.catalogue import Catalogue, load_catalogue
from events.crypto import load_master_key, load_signing_key
from events.journal import Journal
from events.keystore import KeyStore
from events.publisher import DEFAULT_TIMEOUT, Publisher, PublishError
from processors.app import BATCH_SIZE, WorkerConfig
from processors.rules.fold import ViewFold
from processors.rules.policy import Policy, policy_from_env
from projections.erasure_store import RECORD_RESET_SQL, enforce_hook, record_erasure_facts
from projections.jsonb import use_fast_json
from projections.ledger import LedgerProjections
from projections.writer import Hook
from registre.settings import SettingError, Settings

if TYPE_CHECKING:
    from registre.services.rebuild import Rebuild

Clock = Callable[[], datetime]
PUBLISHER_KEY_CACHE_SECONDS = 30.0


def system_clock() -> datetime:
    """The machine's clock, in UTC: the ledger's clock unless a test or a drill gives another."""
    return datetime.now(UTC)


class Registre:
    """Everything registre runs, built from ``settings`` on first use."""

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock
        use_fast_json()

    # --- configuration -------------------------------------------------------------------------

    @cached_property
    def policy(self) -> Policy:
        """The retention policy of REGISTRE_POLICY_FILE (the packaged defaults when unset)."""
        try:
            return policy_from_env(self.settings.env)
        except ValueError as exc:
            raise SettingError(str(exc)) from None

    @cached_property
    def catalogue(self) -> Catalogue:
        return load_catalogue()

    @cached_property
    def kafka(self) -> str:
        """The Kafka bootstrap servers of the configured or running broker."""
        return self.settings.kafka_servers()

    def url(self, role: str) -> str:
        """The database URL of a role's login: processor, publisher, compliance, analyst
        (each service connects as the role its job needs; the owner only migrates)."""
        return self.settings.url_for(role)

    @cached_property
    def master_key(self) -> bytes:
        """The master key; the embedded default generates HOME/master.key (0600) on first use."""
        key, _ = load_master_key(dict(self.settings.env), self.settings.home,
                                 generate=self.settings.embedded)
        return key

    @cached_property
    def signing_key(self) -> Ed25519PrivateKey:
        """The ledger's signing key (not wrapped by the master key); the embedded default
        generates HOME/signing.key (0600) on first use."""
        return load_signing_key(dict(self.settings.env), self.settings.home,
                                generate=self.settings.embedded)

    def ensure_keys(self) -> None:
        """Load the master key and the signing key now (the embedded default creates
        HOME/master.key and HOME/signing.key, 0600, on first use)."""
        for name in ("master_key", "signing_key"):
            self.__dict__.pop(name, None)
        assert len(self.master_key) == 32 and self.signing_key is not None

    # --- adapters ------------------------------------------------------------------------------

    def connect(self, role: str = "compliance") -> psycopg.Connection:
        """A new autocommit connection as ``role`` (the caller closes it)."""
        return psycopg.connect(self.url(role), autocommit=True)

    def keystore(self, cache_seconds: float = 0.0, role: str = "publisher") -> KeyStore:
        """The key store, as the publisher (create and read keys) unless ``role`` says."""
        return KeyStore.connect(self.url(role), self.master_key, cache_seconds)

    def publisher(self, allow_registre: bool = False) -> Publisher:
        """A publisher with its own key store (closed with it). Its acknowledgement is durable:
        through the journal with the embedded broker, the broker's acks=all otherwise."""
        timeout = self.settings.number("REGISTRE_PUBLISH_TIMEOUT", DEFAULT_TIMEOUT)
        try:
            keystore = self.keystore(cache_seconds=PUBLISHER_KEY_CACHE_SECONDS)
            journal = (Journal.connect(self.url("publisher"), timeout)
                       if self.settings.journal else None)
        except psycopg.OperationalError as exc:
            raise PublishError(f"database unreachable ({type(exc).__name__})") from None
        return Publisher("" if journal else self.kafka, keystore, catalogue=self.catalogue,
                         allow_registre=allow_registre, owns_keystore=True, clock=self.clock,
                         journal=journal, timeout=timeout)

    # --- the processors ------------------------------------------------------------------------

    def fold(self) -> ViewFold:
        return ViewFold(self.policy, self.catalogue)

    def projection_hooks(self) -> list[tuple[Hook, Sequence[str]]]:
        """(hook, reset statements) of every projection written beside the customer view."""
        from projections import analytics, consent_history, lookup, requests

        # analytics last: its totals are the rows every worker's batch updates, locked from
        # that statement to the commit (the enforcement hook, after these, destroys keys only
        # once the analytics and the lookup index have read them)
        return [(record_erasure_facts, RECORD_RESET_SQL),
                (consent_history.hook, consent_history.RESET_SQL),
                (requests.hook, requests.RESET_SQL),
                (lookup.make_hook(self.master_key, self.catalogue), lookup.RESET_SQL),
                (analytics.make_hook(self.master_key, self.catalogue), analytics.RESET_SQL)]

    def rebuild_job(self, workers: int | None = None, progress: bool = False,
                    memory_mb: int = 2048) -> Rebuild:
        """`registre rebuild` as the processor role: the live fold and projection hooks for
        the catch-up, the policy and keys for the bulk workers."""
        from registre.services.rebuild import Rebuild

        return Rebuild(self.kafka, self.url("processor"), self.policy, self.master_key,
                       self.signing_key.public_key(), self.fold(),
                       [hook for hook, _ in self.projection_hooks()], self.clock,
                       workers=workers, progress=progress, memory_mb=memory_mb)

    def worker_config(self) -> WorkerConfig:
        env = self.settings.env
        return WorkerConfig(
            kafka=self.kafka,
            worker_id=env.get("REGISTRE_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
            embedded=env.get("REGISTRE_EMBEDDED", "") == "1",
            batch_size=int(self.settings.number("REGISTRE_BATCH_SIZE", BATCH_SIZE)),
            sweep_seconds=self.settings.number("REGISTRE_SWEEP_SECONDS", 3600),
            retry_seconds=self.settings.number("REGISTRE_RETRY_SECONDS", 30),
            session_seconds=self.settings.number("REGISTRE_SESSION_SECONDS", 0) or None,
            datadir=str(self.settings.home / "faust"),  # not in the directory it runs from
        )

    def ledger(self, worker_id: str) -> LedgerProjections:
        """The batch applier of one worker: the fold, the projections, erasure at once."""
        hooks = [hook for hook, _ in self.projection_hooks()]
        hooks.append(enforce_hook(self.policy, self.clock, self.signing_key))
        return LedgerProjections(self.url("processor"), worker_id, self.fold(), hooks, self.policy,
                                 self.clock, self.signing_key, self.catalogue,
                                 journal=self.settings.journal)

"""One-shot initialisation of an external deployment: ``registre init``.

Waits for Kafka and PostgreSQL, creates the topics of ``schemas/topics.json`` with
`deploy.topics.ensure_topics`, applies the migrations with `projections.migrate.migrate`, and
checks that the master key unwraps the data keys already in the key store. Safe to run again:
every step is idempotent. The compose file runs it before the processor workers start.

Configuration (environment, see ``deploy/registre.env.example``): REGISTRE_KAFKA,
REGISTRE_DATABASE_URL, REGISTRE_MASTER_KEY or REGISTRE_MASTER_KEY_FILE, and optionally
REGISTRE_KAFKA_MIN_BROKERS (default 1), REGISTRE_INIT_TIMEOUT (seconds, default 120),
REGISTRE_LOG_LEVEL (default info).

On success one JSON line goes to stdout. On failure one line goes to stderr,
``registre init: <reason>``, and the exit code says which step failed:

    0 ready   2 configuration   3 Kafka   4 PostgreSQL   5 master key does not match the key store
    1 anything unexpected
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from deploy.topics import ensure_topics
from events.catalogue import load_topics
from events.crypto import MasterKeyError, load_master_key
from events.keystore import KeyStore
from processors.app import PROCESSOR_GROUP
from projections.migrate import migrate
from projections.positions import align_group
from registre.settings import safe_url

log = structlog.get_logger("registre.init")

EXIT_OK, EXIT_UNEXPECTED, EXIT_CONFIG, EXIT_KAFKA, EXIT_DATABASE, EXIT_MASTER_KEY = 0, 1, 2, 3, 4, 5
T = TypeVar("T")


class InitError(Exception):
    """An expected failure: ``code`` is the exit code, the message is the one-line reason."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def retry(what: str, attempt: Callable[[], T], deadline: float, code: int,
          interval: float = 1.0) -> T:
    """Call ``attempt`` until it returns; at the deadline raise InitError(code), last reason."""
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except InitError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to reach a service is retried
            reason = _first_line(exc)
            if time.monotonic() >= deadline:
                raise InitError(f"{what} not ready after {tries} attempt(s): {reason}",
                                code) from None
            if tries == 1 or tries % 10 == 0:
                log.info("waiting", service=what, reason=reason)
            time.sleep(interval)


def wait_for_database(url: str, deadline: float) -> None:
    def attempt() -> None:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")

    retry(f"PostgreSQL at {safe_url(url)}", attempt, deadline, EXIT_DATABASE)


def _admin(bootstrap: str, deadline: float) -> KafkaAdminClient:
    """An admin client that gives up within 5 s (or by the deadline) when nothing answers."""
    budget_ms = int(max(1.0, min(5.0, deadline - time.monotonic())) * 1000)
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="registre-init",
                            request_timeout_ms=5_000, bootstrap_timeout_ms=budget_ms,
                            reconnect_backoff_max_ms=1_000)


def wait_for_kafka(bootstrap: str, min_brokers: int, deadline: float) -> int:
    """Wait until the cluster answers and reports at least ``min_brokers``; return the count."""

    def attempt() -> int:
        admin = _admin(bootstrap, deadline)
        try:
            brokers = len(admin.describe_cluster().get("brokers") or [])
        finally:
            admin.close()
        if brokers < min_brokers:
            raise RuntimeError(f"{brokers} broker(s) registered, waiting for {min_brokers}")
        return brokers

    return retry(f"Kafka at {bootstrap}", attempt, deadline, EXIT_KAFKA)


def create_topics(bootstrap: str, deadline: float) -> list[dict[str, Any]]:
    """Create the manifest's topics, then describe them (partitions, replication factor)."""
    wanted = {t["name"]: t for t in load_topics()}
    retry("topic creation", lambda: ensure_topics(bootstrap), deadline, EXIT_KAFKA)

    def describe() -> list[dict[str, Any]]:
        admin = _admin(bootstrap, deadline)
        try:
            described = admin.describe_topics(sorted(wanted))
        finally:
            admin.close()
        out = []
        for topic in described:
            parts = topic.get("partitions") or []
            if topic.get("error_code") or not parts:
                raise RuntimeError(f"topic {topic.get('name') or topic.get('topic')} "
                                   "is not visible yet")
            name = topic.get("name") or topic.get("topic")
            replicas = min(len(p.get("replica_nodes") or p.get("replicas") or []) for p in parts)
            out.append({"name": name, "partitions": len(parts), "replication_factor": replicas,
                        "manifest_partitions": wanted[name]["partitions"],
                        "manifest_replication_factor": wanted[name]["replication_factor"]})
        return out

    topics = retry("topic metadata", describe, deadline, EXIT_KAFKA)
    for t in topics:
        if t["partitions"] < t["manifest_partitions"]:
            log.warning("topic has fewer partitions than the manifest", topic=t["name"],
                        partitions=t["partitions"], manifest=t["manifest_partitions"])
        if t["replication_factor"] < t["manifest_replication_factor"]:
            log.warning("topic replication below the manifest (capped at the broker count)",
                        topic=t["name"], replication=t["replication_factor"],
                        manifest=t["manifest_replication_factor"])
    return topics


def apply_migrations(url: str) -> list[str]:
    try:
        return migrate(url)
    except psycopg.Error as exc:
        raise InitError(f"migration failed: {_first_line(exc)}", EXIT_DATABASE) from None


def check_master_key(url: str, master: bytes) -> int:
    """Unwrap one existing data key, if any; return how many data keys the store holds."""
    try:
        with KeyStore.connect(url, master) as keystore:
            return keystore.check_master_key()
    except MasterKeyError:
        raise InitError(
            "the master key does not unwrap the data keys already in the key store "
            "(wrong REGISTRE_MASTER_KEY / REGISTRE_MASTER_KEY_FILE for this database?)",
            EXIT_MASTER_KEY,
        ) from None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InitError(f"{name} must be a number, got {raw!r}", EXIT_CONFIG) from None
    if value <= 0:
        raise InitError(f"{name} must be positive, got {raw!r}", EXIT_CONFIG)
    return value


def initialise(env: Mapping[str, str], timeout: float | None = None,
               check_key: bool = True) -> dict[str, Any]:
    """Every step, in order; raises InitError. Returns the summary printed on success."""
    kafka = (env.get("REGISTRE_KAFKA") or "").strip()
    database_url = (env.get("REGISTRE_DATABASE_URL") or "").strip()
    if not kafka:
        raise InitError("REGISTRE_KAFKA is not set (Kafka bootstrap servers, host:port,...)",
                        EXIT_CONFIG)
    if not database_url:
        raise InitError("REGISTRE_DATABASE_URL is not set (postgresql://user:pass@host/db)",
                        EXIT_CONFIG)
    master = None
    if check_key:
        home = Path(env.get("REGISTRE_HOME") or ".registre").absolute()
        try:
            master, _ = load_master_key(dict(env), home, generate=False)
        except MasterKeyError as exc:
            raise InitError(str(exc), EXIT_CONFIG) from None
        except OSError as exc:
            raise InitError(f"master key file unreadable: {_first_line(exc)}",
                            EXIT_CONFIG) from None
    min_brokers = int(_positive(env, "REGISTRE_KAFKA_MIN_BROKERS", 1))
    timeout = timeout or _positive(env, "REGISTRE_INIT_TIMEOUT", 120.0)
    deadline = time.monotonic() + timeout

    wait_for_database(database_url, deadline)
    log.info("database reachable", url=safe_url(database_url))
    brokers = wait_for_kafka(kafka, min_brokers, deadline)
    log.info("kafka reachable", bootstrap=kafka, brokers=brokers)
    topics = create_topics(kafka, deadline)
    log.info("topics ready", topics=[t["name"] for t in topics])
    applied = apply_migrations(database_url)
    log.info("migrations applied" if applied else "migrations up to date", names=applied)
    keys = check_master_key(database_url, master) if master is not None else None
    if master is not None:
        log.info("master key checked", data_keys=keys)
    # The workers start after this job: they resume from the projections' own positions.
    aligned = align_group(kafka, database_url, PROCESSOR_GROUP)
    log.info("consumer group aligned on the projections", partitions=len(aligned))
    return {"ready": True, "kafka": kafka, "brokers": brokers, "topics": topics,
            "database_url": safe_url(database_url), "migrations_applied": applied,
            "data_keys": keys, "master_key_checked": master is not None}


def run_job(env: Mapping[str, str], timeout: float | None = None,
            check_key: bool = True) -> int:
    """The init job as `registre init` runs it: one JSON line on success, else one line on
    stderr naming the step; returns the exit code of that step."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # connection retries are expected
    try:
        summary = initialise(env, timeout, check_key=check_key)
    except InitError as exc:
        print(f"registre init: {exc}", file=sys.stderr)
        return exc.code
    except KafkaError as exc:
        print(f"registre init: Kafka refused: {type(exc).__name__}: {_first_line(exc)}",
              file=sys.stderr)
        return EXIT_KAFKA
    except psycopg.Error as exc:
        print(f"registre init: PostgreSQL: {_first_line(exc)}", file=sys.stderr)
        return EXIT_DATABASE
    print(json.dumps(summary))
    return EXIT_OK

"""The production stack in containers: Apache Kafka (KRaft) and PostgreSQL 18 via testcontainers.

Runs only where a Docker engine answers (`docker info` succeeds) and the `testcontainers`
package is installed (it is not a dependency of registre: `pip install testcontainers`);
otherwise every test here is skipped with the reason. It runs `registre init`'s code
against the containers (wait, topics, migrations, master-key check), publishes events with
the Publisher and reads them back from the log, decrypted.

Images: REGISTRE_TEST_KAFKA_IMAGE (default apache/kafka:4.1.0) and REGISTRE_TEST_POSTGRES_IMAGE
(default postgres:18), the ones deploy/docker-compose.yml uses.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from events.catalogue import load_catalogue, load_topics
from events.codec import decode, lookup_from, reveal
from events.crypto import new_data_key
from events.keystore import KeyStore
from events.log import LogReader
from events.model import Event
from events.publisher import Publisher

pytestmark = pytest.mark.integration

KAFKA_IMAGE = os.environ.get("REGISTRE_TEST_KAFKA_IMAGE", "apache/kafka:4.1.0")
POSTGRES_IMAGE = os.environ.get("REGISTRE_TEST_POSTGRES_IMAGE", "postgres:18")


def _docker_unavailable() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no Docker engine: the docker command is not installed"
    try:
        probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no Docker engine: `docker info` did not answer ({type(exc).__name__})"
    if probe.returncode != 0:
        lines = [ln.strip() for ln in (probe.stderr or probe.stdout).splitlines() if ln.strip()]
        return f"no Docker engine: `docker info` failed: {lines[-1] if lines else 'no output'}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def containers() -> Iterator[tuple[str, str]]:
    """(kafka bootstrap, database url) of fresh Kafka and PostgreSQL containers."""
    reason = _docker_unavailable()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("testcontainers", reason="testcontainers is not installed "
                        "(pip install 'testcontainers[postgres]'); not a registre dependency")
    from testcontainers.core.container import DockerContainer
    from testcontainers.postgres import PostgresContainer

    # Kafka advertises the address clients must use, so the host port is chosen up front and
    # bound to the container's 9092 (a single KRaft node: broker and controller).
    host = os.environ.get("TESTCONTAINERS_HOST_OVERRIDE") or "localhost"
    port = _free_port()
    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://{host}:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                  "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_DEFAULT_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_MIN_INSYNC_REPLICAS", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    postgres = PostgresContainer(POSTGRES_IMAGE, username="registre", password="registre",
                                 dbname="registre")
    with postgres, kafka:
        url = postgres.get_connection_url()
        # testcontainers names a SQLAlchemy driver in the scheme (postgresql+psycopg2://...)
        url = "postgresql://" + url.split("://", 1)[1]
        yield f"{host}:{port}", url


@pytest.fixture(scope="module")
def master() -> bytes:
    return new_data_key()


@pytest.fixture(scope="module")
def initialised(containers: tuple[str, str], master: bytes) -> tuple[str, str]:
    """`registre init` against the containers: waits, topics, migrations, key check."""
    from registre.services.init import EXIT_OK, run_job

    bootstrap, url = containers
    env = {"REGISTRE_KAFKA": bootstrap, "REGISTRE_DATABASE_URL": url,
           "REGISTRE_MASTER_KEY": base64.b64encode(master).decode(),
           "REGISTRE_INIT_TIMEOUT": "120", "REGISTRE_LOG_LEVEL": "warning"}
    assert run_job(env) == EXIT_OK
    assert run_job(env) == EXIT_OK  # idempotent: a second run changes nothing
    return bootstrap, url


def _events() -> list[dict]:
    at = "2026-03-02T09:30:00.123456+01:00"
    return [
        {"event_id": "0b8c3c52-4a1e-4c43-9a53-2f1d0e7a9c01", "type": "AccountCreated",
         "subject_id": "acc-tc-000001", "occurred_at": at, "source": "website-accounts",
         "data": {"gender": "female", "last_name": "Martin", "first_name": "Camille",
                  "email": "camille.martin@example.fr", "phone": "+33 6 12 34 56 78",
                  "postal_address": {"line1": "12 rue de la République", "postal_code": "69002",
                                     "city": "Lyon", "country": "FR"},
                  "over_15": True, "notice_version": "2026-01"}},
        {"event_id": "0b8c3c52-4a1e-4c43-9a53-2f1d0e7a9c02", "type": "ConnectionRecorded",
         "subject_id": "acc-tc-000001", "occurred_at": at, "source": "website-auth",
         "data": {"ip": "81.250.12.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                  "location": {"latitude": 45.764, "longitude": 4.8357, "city": "Lyon",
                               "country": "FR"}}},
        {"event_id": "0b8c3c52-4a1e-4c43-9a53-2f1d0e7a9c03", "type": "ConsentGiven",
         "subject_id": "acc-tc-000001", "occurred_at": at, "source": "website-consent",
         "data": {"purposes": ["optimisation", "marketing"], "notice_version": "2026-01",
                  "mechanism": "banner_ok"}},
        {"event_id": "0b8c3c52-4a1e-4c43-9a53-2f1d0e7a9c04", "type": "ConnectionRecorded",
         "subject_id": "visitor-tc-77", "occurred_at": "2026-03-02T10:00:00Z",
         "source": "website-auth", "data": {"ip": "2a01:cb00:1:2::3", "cookie_id": "c-77"}},
    ]


def test_topics_follow_the_manifest(initialised: tuple[str, str]) -> None:
    from kafka.admin import KafkaAdminClient

    bootstrap, _ = initialised
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="registre-test")
    try:
        described = {t["name"]: t for t in admin.describe_topics([t["name"]
                                                                  for t in load_topics()])}
    finally:
        admin.close()
    for topic in load_topics():
        parts = described[topic["name"]]["partitions"]
        assert len(parts) == topic["partitions"]
        # one broker: the manifest's replication factor is capped at 1
        assert all(len(p["replica_nodes"]) == 1 for p in parts)


def test_migrations_applied(initialised: tuple[str, str]) -> None:
    from projections.migrate import migration_files

    _, url = initialised
    with psycopg.connect(url) as conn:
        done = {r[0] for r in conn.execute("SELECT name FROM public.registre_migrations")}
    assert done == {name for name, _ in migration_files()}


def test_publish_and_read_back_decrypted(initialised: tuple[str, str], master: bytes) -> None:
    bootstrap, url = initialised
    catalogue = load_catalogue()
    originals = _events()
    keystore = KeyStore.connect(url, master, cache_seconds=30)
    with Publisher(bootstrap, keystore, owns_keystore=True) as publisher:
        report = publisher.publish_many(originals)
    assert report.rejected == []
    assert report.published == len(originals)

    with LogReader(bootstrap) as reader:
        records = list(reader.read())
    assert len(records) == len(originals)
    by_id = {}
    for rec in records:
        assert rec.key is not None
        # privacy at rest: no personal value travels in clear
        for clear in (b"camille.martin@example.fr", b"Martin", b"81.250.12.7", b"Lyon"):
            assert clear not in rec.value
        decoded = decode(rec.value, catalogue)
        assert rec.key == decoded.subject_id.encode()
        by_id[decoded.event_id] = decoded

    readers = KeyStore.connect(url, master)
    try:
        for original in originals:
            record = by_id[original["event_id"]]
            refs = readers.key_refs(record.subject_id)
            event = reveal(record, lookup_from(readers.keys_for_reading(refs)), catalogue)
            expected = Event(original["event_id"], original["type"], original["subject_id"],
                             datetime.fromisoformat(original["occurred_at"]),
                             original["source"], original["data"])
            assert event.occurred_at == expected.occurred_at.astimezone(UTC)
            assert _without_none(event.to_json()["data"]) == expected.to_json()["data"]
    finally:
        readers.close()


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value

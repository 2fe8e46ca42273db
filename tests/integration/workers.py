"""Helpers of the processor tests: real `python -m registre.worker` workers against a real broker
and a real PostgreSQL, publishing through the real publisher, waiting on the real lag.

Nothing here is a fake: a worker is the same process `registre run` spawns.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaProducer

from deploy.runtime import EmbeddedBroker
from deploy.topics import ensure_topics
from events.keystore import KeyStore
from events.log import LogReader
from events.publisher import Publisher
from projections.migrate import migrate
from projections.positions import applied_positions, lag
from projections.queries import view_hashes
from registre.supervisor.children import die_with_parent

ROOT = Path(__file__).resolve().parents[2]
REGISTRE = str(Path(sys.executable).parent / "registre")  # the console script the README uses
PARIS = timezone(timedelta(hours=1))


# --- a second broker and database, for the tests that compare two runs --------------------


def broker_at(path: Path) -> Iterator[str]:
    """A fresh broker with the manifest's topics (a generator for a fixture to yield from)."""
    b = EmbeddedBroker(path)
    bootstrap = b.start()
    try:
        ensure_topics(bootstrap)
        yield bootstrap
    finally:
        b.stop()


def new_database(pg_server: str) -> str:
    """A new migrated database on the session's PostgreSQL server."""
    name = "ref_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = pg_server.partition("?")
    url = f"{base.rsplit('/', 1)[0]}/{name}?{query}"
    migrate(url)
    return url


def base_env() -> dict[str, str]:
    """The test process's environment without any REGISTRE_ setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}


def signing_key_for(master_key: bytes) -> str:
    """A test's signing key (base64), derived from its master key so that every worker and
    command of one test signs and verifies with the same key."""
    return base64.b64encode(hashlib.sha256(b"test-signing-key" + master_key).digest()).decode()


def client_env(kafka: str, database_url: str, master_key: bytes, home: Path) -> dict[str, str]:
    """Environment for a `registre` command or a worker pointed at external services."""
    env = base_env()
    env.update(REGISTRE_KAFKA=kafka, REGISTRE_DATABASE_URL=database_url,
               REGISTRE_MASTER_KEY=base64.b64encode(master_key).decode(),
               REGISTRE_SIGNING_KEY=signing_key_for(master_key),
               REGISTRE_HOME=str(home))
    return env


class Worker:
    """One `python -m registre.worker` process; its output goes to ``HOME/<worker_id>.log``."""

    def __init__(self, kafka: str, database_url: str, master_key: bytes, home: Path,
                 worker_id: str = "w1", batch_size: int | None = None,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.worker_id = worker_id
        home.mkdir(parents=True, exist_ok=True)
        self.logfile = home / f"{worker_id}.log"
        env = client_env(kafka, database_url, master_key, home)
        env.update(REGISTRE_WORKER_ID=worker_id, REGISTRE_EMBEDDED="1", **(extra_env or {}))
        if batch_size:
            env["REGISTRE_BATCH_SIZE"] = str(batch_size)
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "registre.worker"], env=env,
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (what `registre run` sends), then SIGKILL if it does not exit in time."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all(workers: Iterable[Worker], timeout: float = 20.0) -> None:
    """SIGTERM every worker at once, then wait for each (SIGKILL after ``timeout``)."""
    workers = list(workers)
    for worker in workers:
        if worker.alive:
            worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.stop(timeout)


def publish(kafka: str, keystore: KeyStore, events: Iterable[Mapping[str, Any]],
            allow_registre: bool = False) -> int:
    """Publish with the real publisher; every event must be accepted."""
    events = list(events)
    with Publisher(kafka, keystore, allow_registre=allow_registre) as pub:
        report = pub.publish_many(events)
    assert report.rejected == [], report.rejected
    assert report.published == len(events)
    return report.published


def outbox_pending(database_url: str) -> int:
    """Ledger facts the processors stored but did not publish yet (0 without an outbox)."""
    with psycopg.connect(database_url) as conn:
        if conn.execute("SELECT to_regclass('projections.outbox')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM projections.outbox").fetchone()[0]


def wait_applied(kafka: str, database_url: str, timeout: float = 60.0,
                 workers: Iterable[Worker] = ()) -> None:
    """Until every record in the log is applied (lag 0 on every partition) and nothing the
    processors append themselves is still waiting to be published."""
    workers = list(workers)
    deadline = time.monotonic() + timeout
    behind: dict[int, int] = {}
    while time.monotonic() < deadline:
        behind = {p: n for p, n in lag(kafka, database_url).items() if n}
        if not behind and not outbox_pending(database_url):
            behind = {p: n for p, n in lag(kafka, database_url).items() if n}
            if not behind:
                return
        for w in workers:
            assert w.alive, f"worker {w.worker_id} exited:\n{w.log()[-3000:]}"
        time.sleep(0.2)
    tails = "\n".join(w.log()[-2000:] for w in workers)
    raise AssertionError(f"not applied after {timeout}s, lag {behind}\n{tails}")


def ago(days: float = 0, hours: float = 0) -> str:
    """An instant in the recent past (RFC 3339, Paris offset), so that consents stay valid
    and what should have expired has, whatever the day the tests run."""
    at = datetime.now(UTC) - timedelta(days=days, hours=hours)
    return at.astimezone(PARIS).replace(microsecond=0).isoformat()


def event(kind: str, subject: str, at: str, data: Mapping[str, Any],
          source: str = "website-test") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
            "occurred_at": at, "source": source, "data": dict(data)}


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(database_url: str, sql: str, params: tuple = ()) -> Any:
    return query(database_url, sql, params)[0][0]


def applied_count(database_url: str) -> int:
    return scalar(database_url, "SELECT count(*) FROM projections.applied_events")


def hashes(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        return view_hashes(conn)


def positions(database_url: str) -> dict[int, int]:
    with psycopg.connect(database_url) as conn:
        return applied_positions(conn)


def snapshot(database_url: str) -> dict[str, Any]:
    """Everything the projections hold that a restart or a replay must not change."""
    return {
        "views": hashes(database_url),
        "offsets": positions(database_url),
        "applied": sorted(query(database_url, "SELECT event_id::text, partition, \"offset\""
                                " FROM projections.applied_events ORDER BY 1")),
        "dead_letters": query(database_url, "SELECT topic, partition, \"offset\", event_type,"
                              " reason FROM projections.dead_letters ORDER BY 1, 2, 3"),
        "archive": scalar(database_url, "SELECT count(*) FROM projections.archive"),
    }


# --- a scripted story: one active customer, one deleted account, one erased visitor ----------

ACTIVE, DELETED, VISITOR = "acc-900042", "acc-900317", "vis-c0ffee42"
PARTNER, OTHER = "voyages-partenaire.example", "hotel-partenaire.example"
IDENTITY = {"gender": "female", "last_name": "Canarivaux", "first_name": "Zéphyrine"}
ADDRESS = {"line1": "17 rue des Canaris-Oubliés", "line2": "Bâtiment B, 3e étage",
           "postal_code": "69400", "city": "Villefranche-sur-Saône", "country": "FR"}
CONTACT = {"email": "z.canarivaux@nouvelle-adresse-canari.fr", "phone": "+33 6 71 42 93 58",
           "postal_address": ADDRESS}
CONNECTION = {"ip": "203.0.113.77",
              "location": {"latitude": 45.98917, "longitude": 4.71889,
                           "city": "Villefranche-Canari", "country": "FR"},
              "user_agent": "Mozilla/5.0 (X11; Linux x86_64) CanariBrowser/7.3",
              "cookie_id": "ck-9f2e71c0d4a8-canari"}
DELETED_ACCOUNT = {"gender": "male", "last_name": "Quillebœuf", "first_name": "Anatole",
                   "email": "anatole.quilleboeuf@courriel-canari.fr",
                   "postal_address": {"line1": "4 impasse du Moulin-Grillé",
                                      "postal_code": "78180",
                                      "city": "Montigny-le-Bretonneux", "country": "FR"},
                   "over_15": True, "notice_version": "2026-02"}


def story() -> list[dict[str, Any]]:
    """The events of the three subjects, in log order (fresh event ids on every call)."""
    a, d, v = ACTIVE, DELETED, VISITOR
    consent = {"notice_version": "2026-02", "mechanism": "banner_ok"}
    return [
        event("AccountCreated", a, ago(30), {**IDENTITY, "email": "zephyrine@exemple-canari.fr",
                                             "phone": CONTACT["phone"],
                                             "postal_address": {**ADDRESS, "city": "Lyon"},
                                             "over_15": True, "notice_version": "2026-02"}),
        event("ConsentGiven", a, ago(29), {"purposes": ["optimisation", "personalised_ads"],
                                           **consent}),
        event("ConsentRefused", a, ago(29), {"purposes": ["marketing"], **consent}),
        event("ConsentGiven", a, ago(430), {"purposes": ["third_party_cookies"], **consent}),
        event("AccountUpdated", a, ago(20), {"email": CONTACT["email"],
                                             "postal_address": ADDRESS}),
        event("ConnectionRecorded", a, ago(10), {"ip": "198.51.100.1"}),
        event("ConnectionRecorded", a, ago(2), CONNECTION),
        event("ConsentWithdrawn", a, ago(5), {"purposes": ["personalised_ads"],
                                              "mechanism": "settings_page"}),
        event("SharingAuthorised", a, ago(9), {"recipient": PARTNER,
                                               "categories": ["identity", "contact"],
                                               "purpose": "service"}),
        event("SharingAuthorised", a, ago(9), {"recipient": OTHER, "categories": ["contact"],
                                               "purpose": "service"}),
        event("DataShared", a, ago(8), {"recipient": PARTNER, "recipient_kind": "third_party",
                                        "service": "account_creation",
                                        "categories": ["identity", "contact"], "country": "FR",
                                        "basis": "authorisation"}),
        event("SharingRevoked", a, ago(7), {"recipient": OTHER}),
        event("DataShared", a, ago(6), {"recipient": OTHER, "recipient_kind": "third_party",
                                        "service": "other", "categories": ["contact"],
                                        "country": "FR", "basis": "authorisation"}),
        event("DocumentIssued", a, ago(4), {"kind": "invoice", "document_ref": "FAC-2026-0042"}),
        event("LegalHoldPlaced", a, ago(3), {"case_ref": "LIT-2026-014", "reason": "dispute"}),
        event("AccountCreated", d, ago(40), DELETED_ACCOUNT),
        event("ConnectionRecorded", d, ago(39), {"ip": "2001:db8:85a3::8a2e:370:7334",
                                                 "user_agent": "CanariMobile/2.0 (iPhone)"}),
        event("ConsentGiven", d, ago(39), {"purposes": ["marketing"], **consent}),
        event("AccountDeleted", d, ago(1), {"requested_by": "subject"}),
        event("ConnectionRecorded", v, ago(3), {"ip": "198.51.100.23",
                                                "cookie_id": "vis-cookie-5e1d-canari"}),
        event("ErasureRequested", v, ago(1), {"requested_by": "subject"}),
    ]


def personal_values(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every personal string value of ``events`` long enough not to occur by chance."""
    from events.catalogue import load_catalogue

    cat = load_catalogue()
    found: set[str] = set()
    for e in events:
        for f in cat.types[e["type"]].pii:
            value: Any = e["data"]
            for part in f.path[1:]:
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is None:
                continue
            text = repr(float(value)) if f.plain == "double" else str(value)
            if len(text) >= 5:
                found.add(text)
    return found


def occurring(values: Iterable[str], text: str) -> list[str]:
    """The ``values`` that occur in ``text`` as themselves: not inside a longer run of letters
    or digits, where a postal code turns up by chance (a timestamp's microseconds, an id)."""
    return sorted(v for v in values
                  if re.search(rf"(?<![0-9A-Za-z]){re.escape(v)}(?![0-9A-Za-z])", text))


def log_ends(kafka: str) -> dict[int, int]:
    with LogReader(kafka) as reader:
        return reader.end_offsets()


def copy_log(src: str, dst: str) -> int:
    """Append to ``dst``'s ledger the records of ``src`` it does not have yet, byte for byte,
    in the same partitions: both logs then hold the same records at the same offsets (the
    ciphertext of a publish is random, so this is how two runs get the same log)."""
    start = log_ends(dst)
    producer = KafkaProducer(bootstrap_servers=dst, acks="all", linger_ms=20,
                             max_request_size=16 << 20, client_id="test-copy")
    futures = []
    try:
        with LogReader(src) as reader:
            for rec in reader.read(start=start):
                futures.append((rec.offset, producer.send(
                    reader.topic, key=rec.key, value=rec.value, headers=list(rec.headers),
                    partition=rec.partition)))
        producer.flush()
        for offset, fut in futures:
            assert fut.get(timeout=30).offset == offset
    finally:
        producer.close()
    return len(futures)


def distinct_event_ids(kafka: str) -> set[str]:
    """The event ids of every record of the ledger that decodes."""
    from events.codec import DecodeError, decode

    ids = set()
    with LogReader(kafka) as reader:
        for rec in reader.read():
            try:
                ids.add(decode(rec.value or b"").event_id)
            except DecodeError:
                pass
    return ids


def website_events(subjects: int, deletions: bool = True) -> list[dict[str, Any]]:
    """A website day (registre.demo.data). Without deletions the processors append nothing
    of their own (a deletion makes them record KeysDestroyed/ErasureCompleted with the
    instant they acted), so two runs over the same log give byte-identical views."""
    from registre.demo.data import website_day

    events = website_day(subjects=subjects)
    if not deletions:
        events = [e for e in events if e["type"] not in ("AccountDeleted", "ErasureRequested")]
    return events

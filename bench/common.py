"""Shared pieces of the benchmarks: the embedded services, realistic events, small statistics.

Nothing here is timed: services are started and events generated before any clock runs.
"""

from __future__ import annotations

import json
import os
import platform
import random
import secrets
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

RESULTS = Path(__file__).resolve().parent / "results"

_FIRST = ["Camille", "Léa", "Manon", "Chloé", "Inès", "Louis", "Gabriel", "Hugo", "Jules",
          "Lucas", "Nathan", "Emma", "Zoé", "Théo", "Arthur", "Anaïs", "Élodie", "Mathis"]
_LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
         "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Fournier"]
_STREETS = ["rue de la République", "avenue Jean Jaurès", "boulevard Victor Hugo",
            "rue du Général Leclerc", "place de la Mairie", "chemin des Vignes"]
_CITIES = [("Paris", "75011", 48.8589, 2.3800), ("Lyon", "69003", 45.7597, 4.8422),
           ("Marseille", "13006", 43.2890, 5.3800), ("Toulouse", "31000", 43.6045, 1.4440),
           ("Nantes", "44000", 47.2184, -1.5536), ("Lille", "59000", 50.6292, 3.0573),
           ("Bordeaux", "33000", 44.8378, -0.5792), ("Strasbourg", "67000", 48.5734, 7.7521)]
_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
]
_CONSENTED = ["optimisation", "personalised_ads", "marketing", "third_party_cookies"]


@dataclass(frozen=True)
class Services:
    bootstrap: str
    database_url: str
    home: Path | None = None  # the temp dir holding both services' data
    broker_pid: int | None = None
    postgres_pid: int | None = None  # the postmaster (its backends are its children)


@contextmanager
def embedded_services(keep: bool = False) -> Iterator[Services]:
    """Start the embedded broker (Tansu) and PostgreSQL in a temp dir, create topics, migrate."""
    from deploy.runtime import EmbeddedBroker, EmbeddedPostgres
    from deploy.topics import ensure_topics
    from projections.migrate import migrate
    from projections.roles import login_url

    home = Path(tempfile.mkdtemp(prefix="registre-bench-"))
    password = secrets.token_urlsafe(18)
    pg = EmbeddedPostgres(home / "pg-home", password)
    broker = EmbeddedBroker(home / "broker")
    try:
        database_url = login_url(pg.start(), "postgres", password)
        bootstrap = broker.start()
        ensure_topics(bootstrap)
        migrate(database_url)
        yield Services(bootstrap, database_url, home,
                       broker.process.pid if broker.process else None,
                       pg.server.get_pid() if pg.server else None)  # type: ignore[attr-defined]
    finally:
        broker.stop()
        pg.stop()
        if not keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)


@contextmanager
def extra_broker(home: Path) -> Iterator[tuple[str, int | None]]:
    """Another embedded broker (empty, with the manifest's topics): (bootstrap, pid)."""
    from deploy.runtime import EmbeddedBroker
    from deploy.topics import ensure_topics

    broker = EmbeddedBroker(home)
    try:
        bootstrap = broker.start()
        ensure_topics(bootstrap)
        yield bootstrap, broker.process.pid if broker.process else None
    finally:
        broker.stop()


def signing_key_env(master: bytes) -> dict[str, str]:
    """REGISTRE_SIGNING_KEY for a benchmark's processes, derived from its master key so that
    the worker, the rebuild and the web service of one run sign and verify with one key."""
    import base64
    import hashlib

    key = hashlib.sha256(b"registre-bench-signing-key" + master).digest()
    return {"REGISTRE_SIGNING_KEY": base64.b64encode(key).decode()}


def database_named(url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``url``."""
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def copy_database(url: str, template: str, name: str) -> str:
    """CREATE DATABASE name TEMPLATE template (nobody may be connected to the template)."""
    import psycopg

    with psycopg.connect(database_named(url, "template1"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return database_named(url, name)


def publish_events(bootstrap: str, database_url: str, master: bytes,
                   events: list[dict[str, Any]], batch: int = 1000) -> dict[str, float]:
    """Publish with registre's Publisher (what services use; 30 s key cache as the CLI):
    wall seconds, this process's CPU seconds, events/s."""
    from events.keystore import KeyStore
    from events.publisher import Publisher

    keystore = KeyStore.connect(database_url, master, cache_seconds=30.0)
    with Publisher(bootstrap, keystore, owns_keystore=True) as publisher:
        publisher._producer.partitions_for(publisher.topic)  # metadata before the clock
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(events), batch):
            report = publisher.publish_many(events[i:i + batch])
            if report.rejected:
                raise SystemExit(f"bench: events rejected: {report.rejected[:3]}")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": wall, "cpu_seconds": cpu, "events_per_s": len(events) / wall,
            "cpu_us_per_event": cpu * 1e6 / len(events)}


def copy_log(source: str, target: str) -> int:
    """Copy every ledger record to the same partition of another broker, in order, so that
    partitions and offsets are the same (raw kafka-python producer; nothing re-encoded)."""
    from kafka import KafkaProducer

    from events.codec import MAX_MESSAGE
    from events.log import LogReader

    producer = KafkaProducer(bootstrap_servers=target, client_id="bench-copy", acks="all",
                             enable_idempotence=True, linger_ms=20, batch_size=1 << 20,
                             max_request_size=2 * MAX_MESSAGE, max_block_ms=60_000)
    n = 0
    try:
        with LogReader(source) as reader:
            producer.partitions_for(reader.topic)
            for rec in reader.read():
                producer.send(reader.topic, key=rec.key, value=rec.value,
                              headers=list(rec.headers), partition=rec.partition)
                n += 1
        producer.flush()
    finally:
        producer.close()
    with LogReader(source) as a, LogReader(target) as b:
        if a.end_offsets() != b.end_offsets():
            raise SystemExit("bench: copied log differs from its source")
    return n


def machine() -> dict[str, Any]:
    """What the figures ran on: CPUs, memory, load."""
    import psutil

    return {**environment(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def process_tree(pid: int | None) -> list[Any]:
    """A process and its children (psutil objects); [] when it is gone."""
    import psutil

    if not pid:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class CpuTracker:
    """CPU seconds used by named process trees since ``start()``, counting processes that
    exit meanwhile (PostgreSQL backends of a closed connection) up to their last sample:
    call ``sample()`` often (the benchmarks poll every 50-100 ms)."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.base: dict[tuple[int, float], float] = {}
        self.last: dict[str, dict[tuple[int, float], float]] = {name: {} for name in pids}

    def _read(self, name: str) -> dict[tuple[int, float], float]:
        import psutil

        out = {}
        for proc in process_tree(self.pids[name]):
            try:
                t = proc.cpu_times()
                out[(proc.pid, proc.create_time())] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def start(self) -> CpuTracker:
        for name in self.pids:
            now = self._read(name)
            self.base.update(now)
            self.last[name] = dict(now)
        return self

    def sample(self) -> dict[str, float]:
        for name in self.pids:
            self.last[name].update(self._read(name))
        return self.totals()

    def totals(self) -> dict[str, float]:
        return {name: sum(v - self.base.get(k, 0.0) for k, v in seen.items())
                for name, seen in self.last.items()}


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """user+system CPU seconds so far of each named process tree (children included)."""
    import psutil

    out = {}
    for name, pid in pids.items():
        total = 0.0
        for proc in process_tree(pid):
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        out[name] = total
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _account(rng: random.Random, subject: str, at: datetime) -> dict[str, Any]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    city, code, _, _ = rng.choice(_CITIES)
    address: dict[str, Any] = {
        "line1": f"{rng.randint(1, 180)} {rng.choice(_STREETS)}",
        "postal_code": code, "city": city, "country": "FR",
    }
    if rng.random() < 0.3:
        address["line2"] = f"Bâtiment {rng.choice('ABCD')}, appartement {rng.randint(1, 60)}"
    data: dict[str, Any] = {
        "gender": rng.choice(["female", "male", "other", "undisclosed"]),
        "last_name": last, "first_name": first,
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.fr",
        "postal_address": address, "over_15": True, "notice_version": "2026-01",
    }
    if rng.random() < 0.7:
        data["phone"] = f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} " \
                        f"{rng.randint(10, 99)} {rng.randint(10, 99)}"
    return _envelope("AccountCreated", subject, at, "website-accounts", data)


def _connection(rng: random.Random, subject: str, at: datetime) -> dict[str, Any]:
    if rng.random() < 0.8:
        ip = f"{rng.randint(2, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}." \
             f"{rng.randint(1, 254)}"
    else:
        ip = f"2a01:cb00:{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}::" \
             f"{rng.randrange(1 << 16):x}"
    data: dict[str, Any] = {"ip": ip, "user_agent": rng.choice(_AGENTS),
                            "cookie_id": uuid.UUID(int=rng.getrandbits(128)).hex}
    if rng.random() < 0.6:
        city, _, lat, lon = rng.choice(_CITIES)
        data["location"] = {"latitude": round(lat + rng.uniform(-0.05, 0.05), 5),
                            "longitude": round(lon + rng.uniform(-0.05, 0.05), 5),
                            "city": city, "country": "FR"}
    return _envelope("ConnectionRecorded", subject, at, "website-auth", data)


def _consent(rng: random.Random, subject: str, at: datetime) -> dict[str, Any]:
    purposes = rng.sample(_CONSENTED, rng.randint(1, len(_CONSENTED)))
    data = {"purposes": purposes, "notice_version": "2026-01",
            "mechanism": rng.choice(["banner_ok", "settings_page", "api"])}
    return _envelope("ConsentGiven", subject, at, "website-consent", data)


def _envelope(kind: str, subject: str, at: datetime, source: str,
              data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
            "occurred_at": at.isoformat(timespec="microseconds"), "source": source, "data": data}


def realistic_events(n: int, prefix: str, seed: int = 7,
                     events_per_subject: int = 10) -> list[dict[str, Any]]:
    """``n`` events in canonical JSON form over ``n // events_per_subject`` new subjects.

    Each subject opens an account (AccountCreated), then logs in (ConnectionRecorded, ~60 %
    of all events, 60 % of them with a location) and answers the banner (ConsentGiven, ~30 %).
    Events of a day are interleaved across subjects, as a website's traffic is.
    """
    rng = random.Random(seed)
    subjects = max(1, n // events_per_subject)
    day = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    created: set[int] = set()
    for i in range(n):
        s = rng.randrange(subjects)
        subject = f"{prefix}-{s:07d}"
        at = day + timedelta(seconds=i * 2, microseconds=rng.randrange(1_000_000))
        if s not in created:
            created.add(s)
            out.append(_account(rng, subject, at))
        elif rng.random() < 0.667:
            out.append(_connection(rng, subject, at))
        else:
            out.append(_consent(rng, subject, at))
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "at": datetime.now(UTC).isoformat(timespec="seconds")}


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


class Clock:
    """Accumulates wall time (perf_counter) and this thread's CPU time (thread_time) per stage.

    CPU time is what the stage itself costs; wall time adds waits (PostgreSQL round trips, the
    GIL held by kafka-python's I/O thread, other processes on the machine).
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0
            self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - c0

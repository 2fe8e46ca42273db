"""Erasure latency under steady background load.

Starts `registre run` (embedded broker + PostgreSQL + one worker) in a temporary home, creates
accounts, then keeps publishing logins in the background at a steady rate while it deletes
accounts one at a time, measuring from the broker's acknowledgement of `AccountDeleted` to
the moment both are true in PostgreSQL: every key of the subject is gone and its view shows
it deleted. Prints p50/p90/p99/max and writes bench/results/erasure.json.

    python bench/erasure.py [--subjects 500] [--deletions 200] [--rate 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from events.model import format_instant  # noqa: E402
from projections.positions import backlog  # noqa: E402
from registre.bootstrap import Registre  # noqa: E402
from registre.settings import Settings  # noqa: E402


def ev(kind: str, subject: str, data: dict) -> dict:
    from datetime import UTC, datetime

    return {"event_id": str(uuid.uuid4()), "type": kind, "subject_id": subject,
            "occurred_at": format_instant(datetime.now(UTC)), "source": "bench", "data": data}


def account(subject: str) -> dict:
    return ev("AccountCreated", subject, {
        "gender": "other", "last_name": "Martin", "first_name": "Alex",
        "email": f"{subject}@example.org", "phone": None,
        "postal_address": {"line1": "1 rue X", "line2": None, "postal_code": "75011",
                           "city": "Paris", "country": "FR"},
        "over_15": True, "notice_version": "2026-01"})


def login(subject: str, n: int) -> dict:
    return ev("ConnectionRecorded", subject, {"ip": f"198.51.100.{n % 250 + 1}",
              "location": None, "user_agent": "bench", "cookie_id": None})


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run(subjects: int = 500, deletions: int = 200, rate: float = 500.0,
        log: Callable[[str], None] = print) -> dict:
    """Measure erasure latency under background load; returns the results (not written)."""
    home = Path(tempfile.mkdtemp(prefix="registre-bench-erasure-"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REGISTRE_") or k == "REGISTRE_LOG_LEVEL"}
    env["REGISTRE_HOME"] = str(home)
    settings = Settings.from_env(env)
    proc = subprocess.Popen([sys.executable, "-m", "registre", "run", "--no-http"], env=env,
                            cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=open(home / "run.err", "wb"))
    try:
        deadline = time.monotonic() + 120
        while not settings.runtime().get("processors"):
            if proc.poll() is not None:
                raise SystemExit(f"registre run failed: {(home / 'run.err').read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit("registre run did not start in 120 s")
            time.sleep(0.1)
        kafka, url = settings.endpoints("processor")  # reads the key store and the views
        victims = [f"victim-{i:05d}" for i in range(deletions)]
        others = [f"busy-{i:05d}" for i in range(subjects)]
        with Registre(settings).publisher() as pub:
            pub.publish_many([account(s) for s in victims + others])
        deadline = time.monotonic() + 300
        while backlog(kafka, url):
            if time.monotonic() > deadline:
                raise SystemExit("the accounts were not applied in 300 s")
            time.sleep(0.1)

        stop = threading.Event()
        sent = [0]

        def background() -> None:
            with Registre(settings).publisher() as bg:
                start = time.monotonic()
                while not stop.is_set():
                    due = int((time.monotonic() - start) * rate) - sent[0]
                    if due > 0:
                        bg.publish_many([login(others[(sent[0] + i) % len(others)], sent[0] + i)
                                         for i in range(due)])
                        sent[0] += due
                    time.sleep(0.01)

        thread = threading.Thread(target=background, daemon=True)
        thread.start()
        started = time.monotonic()
        time.sleep(2.0)  # let the load settle
        latencies = []
        try:
            with Registre(settings).publisher() as pub, \
                    psycopg.connect(url, autocommit=True) as db:
                for subject in victims:
                    pub.publish(ev("AccountDeleted", subject, {"requested_by": "subject"}))
                    t0 = time.perf_counter()
                    while True:
                        keys = db.execute("SELECT count(*) FROM keystore.data_keys WHERE"
                                          " subject_id = %s", (subject,)).fetchone()[0]
                        status = db.execute("SELECT status FROM projections.customer_view"
                                            " WHERE subject_id = %s", (subject,)).fetchone()[0]
                        if keys == 0 and status == "deleted":
                            break
                        if time.perf_counter() - t0 > 60:
                            raise SystemExit(f"{subject} not erased after 60 s")
                        time.sleep(0.002)
                    latencies.append(time.perf_counter() - t0)
        finally:
            stop.set()
            thread.join(30)
        elapsed = time.monotonic() - started
        result = {
            "deletions": len(latencies), "background_events": sent[0],
            "background_rate_target": rate,
            "background_rate_achieved": round(sent[0] / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p90_ms": round(percentile(latencies, 0.90) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1), "target_p99_ms": 1000,
        }
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--deletions", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500.0, help="background events/s")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.subjects, args.deletions = 200, 50
    result = run(args.subjects, args.deletions, args.rate)
    print(f"erasure latency under {args.rate:g} events/s background load "
          f"({result['deletions']} deletions):")
    for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        print(f"  {k:7} {result[k]:8.1f}")
    print(f"  target p99 < 1000 ms: {'met' if result['p99_ms'] < 1000 else 'MISSED'}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "erasure.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

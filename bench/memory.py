"""Worker memory: RSS of one `python -m processors` process applying N events about N/10
subjects (default 1M / 100k), sampled every 50 ms from its start to lag 0 (psutil).

The events are published first with registre's Publisher; the RSS is then followed against
the events applied, so a figure that grows with the ledger (a leak, a cache without bound)
shows as a slope, not only as a maximum. Target: under 500 MB at 1M events / 100k subjects.

    python -m bench.memory [--events N] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/memory.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    RESULTS,
    embedded_services,
    machine,
    publish_events,
    realistic_events,
    write_results,
)
from bench.processors import run_worker, timeout_for  # noqa: E402

TARGET_MB = 500.0


def from_worker_run(worker: dict[str, Any], events: int, subjects: int) -> dict[str, Any]:
    """The memory figure from a `bench.processors` worker pass."""
    curve = worker.get("rss_mb_by_events_done") or []
    half = [mb for done, mb in curve if done <= events // 2]
    late = [mb for done, mb in curve if done >= events // 2]
    return {"events": events, "subjects": subjects, "rss_max_mb": worker["rss_max_mb"],
            "rss_first_half_max_mb": max(half) if half else None,
            "rss_second_half_max_mb": max(late) if late else None,
            "rss_mb_by_events_done": curve, "target_mb": TARGET_MB,
            "meets_target": worker["rss_max_mb"] < TARGET_MB}


def run(events: int = 1_000_000, log: Callable[[str], None] = print) -> dict[str, Any]:
    from events.crypto import new_data_key
    from registre.logs import configure

    configure("warning")
    master = new_data_key()
    evs = realistic_events(events, "mem", seed=9)
    subjects = len({e["subject_id"] for e in evs})
    with embedded_services() as svc, tempfile.TemporaryDirectory(prefix="registre-mem-") as w:
        log(f"  publishing {len(evs):,} events about {subjects:,} subjects")
        published = publish_events(svc.bootstrap, svc.database_url, master, evs)
        del evs
        log("  one worker applies them; RSS sampled every 50 ms")
        worker = run_worker(svc.bootstrap, svc.database_url, master, Path(w), events,
                            {"postgres": svc.postgres_pid, "broker": svc.broker_pid},
                            timeout=timeout_for(events))
    return {"benchmark": "memory", "machine": machine(), "publish": published,
            "worker": {k: v for k, v in worker.items() if k != "rss_mb_by_events_done"},
            **from_worker_run(worker, events, subjects)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="100000 events / 10000 subjects")
    p.add_argument("--output", default=str(RESULTS / "memory.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.events = 100_000
    r = run(args.events, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(f"worker RSS at {r['events']:,} events / {r['subjects']:,} subjects: max "
          f"{r['rss_max_mb']:.0f} MB (first half {r['rss_first_half_max_mb']:.0f} MB, second "
          f"half {r['rss_second_half_max_mb']:.0f} MB); target < {TARGET_MB:.0f} MB: "
          f"{'met' if r['meets_target'] else 'MISSED'}")
    print(f"wrote {write_results(args.output, r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

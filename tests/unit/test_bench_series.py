"""The benchmark's growth series: every measured series gets its CPU-based exponent."""

from __future__ import annotations

import math
from typing import Any

from bench.scaling import series


def _size(n: int, cpu: float) -> dict[str, Any]:
    """One size's results, every cost per event ``cpu`` µs (linear growth)."""
    return {
        "events": n,
        "publish": {"events_per_s": 1e6 / cpu, "cpu_us_per_event": cpu},
        "process": {"worker_events_per_s": 1e6 / cpu, "counter_events_per_s": 2e6 / cpu,
                    "worker_cpu_us_per_event": cpu, "postgres_cpu_us_per_event": cpu,
                    "parallel": {"events_per_s": 1e6 / cpu,
                                 "workers_cpu_us_per_event": cpu * n / 100_000,
                                 "postgres_cpu_us_per_event": cpu * n / 100_000}},
        "rebuild": {"rebuild_seconds": cpu * n / 1e6, "fetch_decode_seconds": cpu * n / 2e6,
                    "rebuild_cpu_us_per_event": cpu, "rebuild_postgres_cpu_us_per_event": 0.0},
        "audit": {"consent_ms": {"p50": 0.3, "p99": 1.0}, "log_scan_seconds": {"median": n / 1e5}},
    }


def test_two_workers_get_a_cpu_exponent_from_their_own_cpu() -> None:
    out = series([_size(100_000, 200.0), _size(1_000_000, 200.0)])
    two = out["process, 2 workers"]
    assert not math.isnan(two["k_cpu"])
    assert math.isclose(two["k_cpu"], 2.0, abs_tol=0.01)  # their CPU per event grew 10×
    assert math.isclose(out["process"]["k_cpu"], 1.0, abs_tol=0.01)

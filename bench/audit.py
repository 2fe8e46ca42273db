"""Audit cost per subject: "what did S consent to for P at T?" on a ledger applied by the
processors (projections filled by the worker's own hooks, not by a bench shortcut).

(a) ``services.audit.consent(conn, subject, purpose, at)`` over one open connection for random
    subjects, purposes and instants (p50 / p99 after a warm-up);
(b) for a few of them, the answer from the log: ``registre.services.replay.subject_records`` (that
    subject's partition, filtered on the key before decoding) + ``rules.audit.consent_at``.

(a) should stay flat as the ledger grows; (b) grows with the partition. Both answers are
compared. Used by `bench.scaling`; ``bench.consent`` is the 1M-event / 100k-subject figure.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.common import median, percentile

PURPOSES = ["optimisation", "personalised_ads", "marketing", "third_party_cookies"]
DAY = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # bench.common.realistic_events starts here


def measure(bootstrap: str, database_url: str, subjects: list[str], events: int,
            queries: int = 2000, scans: int = 3, seed: int = 17) -> dict[str, Any]:
    from processors.rules.audit import consent_at
    from processors.rules.policy import load_policy
    from registre.services import audit
    from registre.services.replay import subject_records

    policy = load_policy(None)  # the packaged durations, as `registre` without a policy file
    rng = random.Random(seed)
    span = timedelta(seconds=2 * events + 3600)  # realistic_events: one event every 2 s

    def question() -> tuple[str, str, datetime]:
        at = DAY + timedelta(seconds=rng.uniform(0, span.total_seconds()))
        return rng.choice(subjects), rng.choice(PURPOSES), at.replace(microsecond=0)

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    scan_runs: list[dict[str, Any]] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(min(200, queries)):
            audit.consent(conn, *question(), policy)
        for _ in range(queries):
            s, purpose, at = question()
            t = time.perf_counter()
            answer = audit.consent(conn, s, purpose, at, policy)
            latencies.append((time.perf_counter() - t) * 1000)
            statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
        for _ in range(scans):
            s, purpose, at = question()
            t = time.perf_counter()
            records = subject_records(bootstrap, s)
            pure = consent_at(records, purpose, at, policy.consent_validity_months)
            seconds = time.perf_counter() - t
            answer = audit.consent(conn, s, purpose, at, policy)
            scan_runs.append({"subject": s, "seconds": seconds, "records": len(records),
                              "same_answer": pure == {k: answer[k] for k in pure}})
    return {
        "queries": queries, "statuses": statuses,
        "consent_ms": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                       "max": max(latencies), "mean": sum(latencies) / len(latencies)},
        "log_scan_seconds": {"median": median([r["seconds"] for r in scan_runs]),
                             "runs": scan_runs},
        "answers_equal": all(r["same_answer"] for r in scan_runs),
    }

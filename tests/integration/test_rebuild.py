"""`registre rebuild` replays the log into the projections, blue/green: the result equals what
the live processors built (in place with a worker running, under live traffic, and into an
empty database), the live worker keeps applying while it runs, the swap leaves every grant,
policy and view as the migrations made them, and an interrupted rebuild changes nothing."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
import workers as w

from projections.roles import PROCESSOR, ensure_login
from registre.bootstrap import Registre
from registre.services.rebuild import rebuild
from registre.settings import Settings
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration
PASSWORD = secrets.token_urlsafe(18)

# Every projection, as rows to compare (volatile columns left out: when a row was written).
PROJECTIONS = {
    "customer_view": "SELECT subject_id, status, doc::jsonb::text FROM projections.customer_view",
    "applied_events": 'SELECT event_id::text, partition, "offset" FROM projections.applied_events',
    "dead_letters": 'SELECT topic, partition, "offset", event_type, reason'
                    " FROM projections.dead_letters",
    "consent_history": "SELECT subject_id, purpose, occurred_at, status, event_id::text,"
                       " notice_version, mechanism, choice_event_id::text, partition, \"offset\""
                       " FROM projections.consent_history",
    "analytics_totals": "SELECT * FROM projections.analytics_totals",
    "analytics_members": "SELECT * FROM projections.analytics_members",
    "requests": "SELECT subject_id, request_id::text, kind, channel, received_at, deadline,"
                " extended_months, completed_at, outcome, doc::text FROM projections.requests",
    "erasure_requests": "SELECT event_id::text, subject_id, occurred_at"
                        " FROM projections.erasure_requests",
    "contact_lookup": "SELECT subject_id, kind, digest FROM projections.contact_lookup",
    "erasures": "SELECT subject_id, event_id::text, kind, occurred_at, body::text"
                " FROM projections.erasures",
    "offsets": "SELECT * FROM projections.offsets",
}


def projection_rows(url: str, erased_countries: bool = False) -> dict[str, list[tuple]]:
    """Every projection's rows, sorted. With ``erased_countries``, connections are compared
    per day only (a rebuild counts the country of a connection whose location key was
    destroyed since as unknown: README, Analysts)."""
    with psycopg.connect(url) as conn:
        out = {name: sorted(conn.execute(sql).fetchall(), key=repr)
               for name, sql in PROJECTIONS.items()}
        if erased_countries:
            out["analytics_totals"] = sorted(conn.execute(
                "SELECT measure, period, CASE WHEN measure = 'connections' THEN '' ELSE dim1"
                " END, dim2, sum(events), sum(granted), CASE WHEN measure = 'connections' THEN"
                " 0 ELSE sum(subjects) END FROM projections.analytics_totals"
                " GROUP BY 1, 2, 3, 4").fetchall(), key=repr)
            out["analytics_members"] = [m for m in out["analytics_members"]
                                        if m[0] != "connections"]
    return out


CATALOG = {
    # owner, grants (exploded), row-level security, options, comment of every relation
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner),
               (SELECT array_agg(format('%s:%s:%s:%s', pg_get_userbyid(a.grantor), a.grantee,
                                        a.privilege_type, a.is_grantable) ORDER BY 1)
                FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a),
               c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
               obj_description(c.oid, 'pg_class'), c.relreplident
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('projections', 'analytics', 'projections_next', 'projections_old')
          AND c.relkind IN ('r', 'v', 'm', 'S', 'p')""",
    "policies": """
        SELECT schemaname, tablename, policyname, permissive, cmd,
               (SELECT array_agg(r ORDER BY r) FROM unnest(roles) r), qual, with_check
        FROM pg_policies WHERE schemaname = 'projections'""",
    "views": """
        SELECT schemaname, viewname, definition FROM pg_views
        WHERE schemaname IN ('projections', 'analytics')""",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname IN ('projections', 'projections_next')""",
    "constraints": """
        SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'projections'""",
    "columns": """
        SELECT table_schema, table_name, column_name, ordinal_position, data_type,
               is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'projections'""",
    "sequence_owners": """
        SELECT s.relname, t.relname, a.attname FROM pg_depend d
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE d.deptype = 'a'""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal""",
    "default_privileges": "SELECT defaclrole, defaclnamespace, defaclobjtype, defaclacl::text"
                          " FROM pg_default_acl",
    "schemas": "SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace"
               " WHERE nspname LIKE 'projections%' OR nspname = 'analytics'",
}


def catalog(url: str) -> dict[str, list[tuple]]:
    """What the migrations set on the projections: it must not change across a rebuild."""
    with psycopg.connect(url) as conn:
        return {name: sorted(conn.execute(sql).fetchall(), key=repr)
                for name, sql in CATALOG.items()}


def renamed(events: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The same events about other subjects (fresh ids), for traffic of new people."""
    return [{**e, "event_id": str(uuid.uuid4()),
             "subject_id": prefix + e["subject_id"]} for e in events]


@pytest.fixture
def second_database(pg_server):
    return w.new_database(pg_server)


def test_rebuild_equals_the_live_projection(broker, database_url, second_database,
                                            master_key, keystore, tmp_path):
    # deletions and an erasure included: the processors' own facts are in the log, and
    # one event the fold rejects leaves a dead letter
    events = w.story() + [w.event("RequestReceived", w.ACTIVE, w.ago(2), {
        "request_id": str(uuid.uuid4()), "kind": "access", "channel": "post",
        "identity_verified": True}, source="registre-compliance")] + w.website_events(250)
    rejected = w.event("AccountUpdated", "acc-777777", w.ago(1), {"first_name": "Personne"})
    home = tmp_path / "home"
    env = w.client_env(broker, database_url, master_key, home)
    worker = w.Worker(broker, database_url, master_key, home)
    try:
        w.publish(broker, keystore, events[:500] + [rejected])
        w.wait_applied(broker, database_url, workers=[worker])
        live, rows, schema = (w.snapshot(database_url), projection_rows(database_url, True),
                              catalog(database_url))
        assert len(live["dead_letters"]) == 1 and live["views"]
        assert all(rows[t] for t in ("consent_history", "analytics_totals", "requests",
                                     "contact_lookup", "erasures", "erasure_requests"))

        # in place, while the worker runs
        done = subprocess.run([REGISTRE, "rebuild"], env=env, capture_output=True, text=True,
                              timeout=120, cwd=w.ROOT)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["rebuilt"] is True and answer["mode"] == "live"
        assert answer["records"] == sum(w.log_ends(broker).values())
        rebuilt = w.snapshot(database_url)
        assert rebuilt["views"] == live["views"]
        assert rebuilt["applied"] == live["applied"]
        assert rebuilt["offsets"] == live["offsets"]
        assert [d[:4] for d in rebuilt["dead_letters"]] == [d[:4] for d in live["dead_letters"]]
        assert projection_rows(database_url, True) == rows
        assert catalog(database_url) == schema

        # the worker continues from the rebuilt positions: nothing applied twice
        w.publish(broker, keystore, events[500:])
        w.wait_applied(broker, database_url, workers=[worker])
        assert w.applied_count(database_url) == len(w.distinct_event_ids(broker)) - 1
    finally:
        worker.stop()

    # into an empty database: the same views, positions and applied events
    into = Registre(Settings.from_env(w.client_env(broker, second_database, master_key,
                                                   tmp_path / "second")))
    report = rebuild(into.rebuild_job())
    assert report.records == sum(w.log_ends(broker).values()) and report.mode == "end"
    fresh, final = w.snapshot(second_database), w.snapshot(database_url)
    assert fresh["views"] == final["views"]
    assert fresh["applied"] == final["applied"]
    assert fresh["offsets"] == final["offsets"]
    assert [d[:4] for d in fresh["dead_letters"]] == [d[:4] for d in final["dead_letters"]]


class Traffic(threading.Thread):
    """Publishes ``events`` in small chunks until told to stop or out of events."""

    def __init__(self, broker: str, keystore: Any, events: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.broker, self.keystore, self.events = broker, keystore, events
        self.stop = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            from events.publisher import Publisher

            with Publisher(self.broker, self.keystore) as pub:
                while self.sent < len(self.events) and not self.stop.is_set():
                    chunk = self.events[self.sent:self.sent + 20]
                    assert pub.publish_many(chunk).rejected == []
                    self.sent += len(chunk)
                    time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def watch_swap(url: str, stop: threading.Event, seen: list[tuple[float, int, int]]) -> None:
    """(time, oid of the live customer view, applied records) every 20 ms: the oid changes
    at the swap, the applied records show the live worker at work."""
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            oid, applied = conn.execute(
                "SELECT 'projections.customer_view'::regclass::oid,"
                " (SELECT coalesce(sum(next_offset), 0) FROM projections.offsets"
                "  WHERE consumer = 'ledger')").fetchone()
            seen.append((time.monotonic(), oid, int(applied)))
            time.sleep(0.02)


def test_rebuild_under_live_traffic(broker, database_url, master_key, keystore, tmp_path,
                                    pg_server):
    home = tmp_path / "home"
    env = w.client_env(broker, database_url, master_key, home)
    # the rebuild connects as the processors' login, which owns no table
    env["REGISTRE_DATABASE_URL_PROCESSOR"] = ensure_login(
        database_url, PROCESSOR, "registre_test_rebuilder", PASSWORD)
    first = w.website_events(200, deletions=False)
    traffic = Traffic(broker, keystore,
                      renamed(w.website_events(600, deletions=False), "live-"))
    worker = w.Worker(broker, database_url, master_key, home, batch_size=25)
    seen: list[tuple[float, int, int]] = []
    watching = threading.Event()
    watcher = threading.Thread(target=watch_swap, args=(database_url, watching, seen))
    try:
        w.publish(broker, keystore, first)
        w.wait_applied(broker, database_url, workers=[worker])
        before = catalog(database_url)
        watcher.start()
        traffic.start()
        w.wait_until(lambda: traffic.sent >= 100, timeout=60)
        done = subprocess.run([REGISTRE, "rebuild", "--workers", "2"], env=env,
                              capture_output=True, text=True, timeout=180, cwd=w.ROOT)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        traffic.stop.set()
        traffic.join(30)
        assert traffic.error is None, traffic.error
        w.wait_applied(broker, database_url, timeout=120, workers=[worker])
    finally:
        watching.set()
        worker.stop()
    watcher.join(10)

    # the live worker kept applying while the rebuild ran: before the swap, its positions
    # moved past where they stood when the rebuild started
    swap = next(i for i, (_, oid, _) in enumerate(seen) if oid != seen[0][1])
    assert seen[swap - 1][2] > seen[0][2] + 50, seen[:: max(1, len(seen) // 20)]
    assert answer["mode"] == "live" and answer["caught_up"] > 0
    assert answer["swap_ms"] < 3000, answer  # the only moment anyone waited for the rebuild
    steps = answer["swap_steps_ms"]  # where the swap's time went, step by step
    assert list(steps) == ["forget_contacts", "swap_tables", "commit"], answer
    assert 0 < sum(steps.values()) <= answer["swap_ms"] + 0.5, answer
    assert catalog(database_url) == before

    # what the rebuild made and the worker continued equals a rebuild made in quiet, here
    # with each partition folded in several passes (as a worker with little memory does)
    after = projection_rows(database_url)
    assert len(after["customer_view"]) == len({e["subject_id"] for e in first}) + len(
        {e["subject_id"] for e in traffic.events[:traffic.sent]})
    quiet = rebuild(Registre(Settings.from_env(env)).rebuild_job(memory_mb=1))
    assert quiet.caught_up == 0 and quiet.slices > 1
    assert projection_rows(database_url) == after


def test_an_interrupted_rebuild_leaves_the_live_projections(broker, database_url, master_key,
                                                            keystore, tmp_path):
    home = tmp_path / "home"
    env = w.client_env(broker, database_url, master_key, home)
    with w.Worker(broker, database_url, master_key, home) as worker:
        w.publish(broker, keystore, w.story() + w.website_events(150))
        w.wait_applied(broker, database_url, workers=[worker])
    rows, schema = projection_rows(database_url), catalog(database_url)
    proc = subprocess.Popen([REGISTRE, "rebuild", "--workers", "1"], env=env, cwd=w.ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        w.wait_until(lambda: w.scalar(
            database_url, "SELECT to_regclass('projections_next.customer_view') IS NOT NULL"),
            timeout=60, interval=0.01)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    assert w.scalar(database_url, "SELECT count(*) FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace"
                    " WHERE n.nspname IN ('projections_next', 'projections_old')") == 0
    assert projection_rows(database_url) == rows
    assert catalog(database_url) == schema


def test_one_event_id_in_two_partitions_rebuilds_as_the_processors_applied_it(
        broker, database_url, master_key, keystore, tmp_path):
    # acc-dup-1 and acc-dup-3 are in different partitions (5 and 4): the workers fold the two
    # records side by side, and the rebuild must keep the one the live processors applied
    shared = str(uuid.uuid4())
    consent = {"purposes": ["marketing"], "notice_version": "2026-02", "mechanism": "api"}
    first = {**w.event("ConsentGiven", "acc-dup-1", w.ago(2), consent), "event_id": shared}
    again = {**w.event("ConsentGiven", "acc-dup-3", w.ago(1), consent), "event_id": shared}
    home = tmp_path / "home"
    with w.Worker(broker, database_url, master_key, home) as worker:
        w.publish(broker, keystore, w.website_events(40, deletions=False) + [first])
        w.wait_applied(broker, database_url, workers=[worker])
        w.publish(broker, keystore, [again])
        w.wait_applied(broker, database_url, workers=[worker])
    live = projection_rows(database_url)
    assert [v[0] for v in live["customer_view"] if v[0].startswith("acc-dup")] == ["acc-dup-1"]
    report = rebuild(Registre(Settings.from_env(
        w.client_env(broker, database_url, master_key, home))).rebuild_job())
    assert report.records == sum(w.log_ends(broker).values())
    assert projection_rows(database_url) == live

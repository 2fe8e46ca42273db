"""`registre rebuild` replays the log into the projections: the result equals what the live
processors built, in place (with a worker running) and into an empty database."""

from __future__ import annotations

import json
import subprocess

import pytest
import workers as w

from registre.bootstrap import Registre
from registre.services.rebuild import rebuild
from registre.settings import Settings
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration


@pytest.fixture
def second_database(pg_server):
    return w.new_database(pg_server)


def test_rebuild_equals_the_live_projection(broker, database_url, second_database,
                                            master_key, keystore, tmp_path):
    # deletions and an erasure included: the processors' own facts are in the log, and
    # one event the fold rejects leaves a dead letter
    events = w.story() + w.website_events(250)
    rejected = w.event("AccountUpdated", "acc-777777", w.ago(1), {"first_name": "Personne"})
    home = tmp_path / "home"
    env = w.client_env(broker, database_url, master_key, home)
    worker = w.Worker(broker, database_url, master_key, home)
    try:
        w.publish(broker, keystore, events[:500] + [rejected])
        w.wait_applied(broker, database_url, workers=[worker])
        live = w.snapshot(database_url)
        assert len(live["dead_letters"]) == 1 and live["views"]

        # in place, while the worker runs
        done = subprocess.run([REGISTRE, "rebuild"], env=env, capture_output=True, text=True,
                              timeout=120, cwd=w.ROOT)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer == {"rebuilt": True, "records": sum(w.log_ends(broker).values())}
        rebuilt = w.snapshot(database_url)
        assert rebuilt["views"] == live["views"]
        assert rebuilt["applied"] == live["applied"]
        assert rebuilt["offsets"] == live["offsets"]
        assert [d[:4] for d in rebuilt["dead_letters"]] == [d[:4] for d in live["dead_letters"]]

        # the worker continues from the rebuilt positions: nothing applied twice
        w.publish(broker, keystore, events[500:])
        w.wait_applied(broker, database_url, workers=[worker])
        assert w.applied_count(database_url) == len(w.distinct_event_ids(broker)) - 1
    finally:
        worker.stop()

    # into an empty database: the same views, positions and applied events
    into = Registre(Settings.from_env(w.client_env(broker, second_database, master_key,
                                                   tmp_path / "second")))
    records = rebuild(into.kafka, into.url("processor"), into.fold(), into.projection_hooks(),
                      into.clock, into.signing_key.public_key(), progress=False)
    assert records == sum(w.log_ends(broker).values())
    fresh, final = w.snapshot(second_database), w.snapshot(database_url)
    assert fresh["views"] == final["views"]
    assert fresh["applied"] == final["applied"]
    assert fresh["offsets"] == final["offsets"]
    assert [d[:4] for d in fresh["dead_letters"]] == [d[:4] for d in final["dead_letters"]]

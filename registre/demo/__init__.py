"""`registre demo`: the whole story on the embedded default, start to finish.

It runs `registre run` in REGISTRE_HOME/demo (wiped first), publishes a website day through
the publisher API, waits for the processors, shows what the ledger knows and answers the
compliance questions, then stops everything cleanly.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from projections.positions import backlog
from projections.queries import customer_view
from registre import bootstrap as app
from registre.cli.errors import UserError
from registre.cli.output import render_text
from registre.demo.data import website_day
from registre.services.views import brief, render
from registre.settings import Settings


class Demo:
    def __init__(self, settings: Settings) -> None:
        self.home = settings.home / "demo"
        env = {k: v for k, v in settings.env.items()
               if k not in ("REGISTRE_KAFKA", "REGISTRE_DATABASE_URL")}
        env["REGISTRE_HOME"] = str(self.home)
        self.env = env
        self.settings = Settings.from_env(env)
        self.proc: subprocess.Popen | None = None
        self.t0 = time.monotonic()
        self.events: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:5.1f}s] {text}", flush=True)

    def show(self, title: str, answer: Any) -> None:
        print(f"\n--- {title}")
        print(render_text(answer))
        print(flush=True)

    def start(self) -> None:
        old = Settings.from_env(self.env).runtime()
        if old.get("pid"):
            raise UserError(f"a demo still runs in {self.home} (pid {old['pid']}); stop it first")
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        self.log = open(self.home / "run.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "registre", "run"],
                                     env=self.env, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self.settings.runtime().get("processors"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"registre run did not start; see {self.home / 'run.log'}")
            time.sleep(0.1)
        kafka, _ = self.settings.endpoints()
        self.say(f"started the embedded broker ({kafka}), PostgreSQL and one processor worker"
                 f" in {self.home}")

    def wait(self, timeout: float = 90.0) -> None:
        kafka, database_url = self.settings.endpoints()
        deadline = time.monotonic() + timeout
        while backlog(kafka, database_url):
            if time.monotonic() > deadline:
                raise UserError("the processors did not catch up in time")
            time.sleep(0.1)

    def publish(self, events: list[dict[str, Any]], allow_registre: bool = False) -> None:
        with app.open_publisher(self.settings, allow_registre=allow_registre) as publisher:
            report = publisher.publish_many(events)
        if report.rejected:
            raise UserError(f"demo event rejected: {report.rejected[0][1]}")

    def view(self, subject: str, **kw: Any) -> dict[str, Any]:
        _, database_url = self.settings.endpoints()
        with psycopg.connect(database_url) as conn:
            doc = customer_view(conn, subject)
        with app.open_keystore(self.settings) as ks:
            return brief(render(doc, ks, datetime.now(UTC), **kw))

    def pick(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> str:
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for e in self.events:
            by_subject.setdefault(e["subject_id"], []).append(e)
        return next(s for s, evs in sorted(by_subject.items()) if predicate(evs))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


def _types(events: list[dict[str, Any]]) -> set[str]:
    return {e["type"] for e in events}


def story(demo: Demo) -> None:
    demo.events = website_day()
    subjects = {e["subject_id"] for e in demo.events}
    t = time.monotonic()
    demo.publish(demo.events)
    demo.say(f"published a website day: {len(demo.events)} events about {len(subjects)} people"
             f" in {time.monotonic() - t:.1f}s (validated, personal fields encrypted, Avro)")
    t = time.monotonic()
    demo.wait()
    demo.say(f"the processors applied everything in {time.monotonic() - t:.1f}s")
    active = demo.pick(lambda evs: {"ConsentWithdrawn", "SharingAuthorised"} <= _types(evs)
                       or {"ConsentWithdrawn", "ConnectionRecorded"} <= _types(evs))
    demo.show(f"customer view of {active} (consent withdrawn during the day)", demo.view(active))
    deleted = demo.pick(lambda evs: "AccountDeleted" in _types(evs))
    demo.show(f"customer view of {deleted} (deleted their account)", demo.view(deleted))


def analysts(demo: Demo) -> None:
    """What an analyst sees: aggregates only, through the analyst login."""
    url = demo.settings.runtime().get("analyst_database_url")
    if not url:
        return
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT purpose, asked, granted, consent_rate, suppressed FROM consent_daily"
            " ORDER BY day, purpose").fetchall()
        try:
            conn.execute("SELECT count(*) FROM projections.customer_view")
            refused = "no"
        except psycopg.errors.InsufficientPrivilege:
            refused = "yes (permission denied)"
    demo.show("analyst: consent rate per purpose on 2026-03-03 (analytics.consent_daily)",
              [{"purpose": p, "asked": a, "granted": g, "rate": str(r), "suppressed": sup}
               for p, a, g, r, sup in rows])
    demo.say(f"the analyst login reading the customer view is refused: {refused}")


def run_demo(settings: Settings) -> int:
    demo = Demo(settings)
    try:
        demo.start()
        story(demo)
        analysts(demo)
        from registre.demo import audit as demo_audit
        from registre.demo import erasure as demo_erasure

        demo_erasure.chapter(demo)
        demo_audit.chapter(demo)
    finally:
        demo.stop()
    demo.say("stopped cleanly: broker, database and processors are down")
    return 0

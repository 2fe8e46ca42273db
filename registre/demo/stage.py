"""The demo's stage: `registre run` in REGISTRE_HOME/demo (wiped first), and what each chapter
uses to publish, wait, look and tell."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from projections.positions import backlog
from registre.bootstrap import Registre
from registre.errors import UserError
from registre.output import render_text
from registre.services.compliance import Compliance
from registre.services.views import brief
from registre.settings import Settings

READER = "demo-dpo"


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

    @cached_property
    def registre(self) -> Registre:
        """Everything the running demo stack offers (built once it runs)."""
        return Registre(self.settings)

    @cached_property
    def desk(self) -> Compliance:
        """The compliance desk, as the demo's data-protection officer."""
        return Compliance(self.registre, READER)

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
        self.http = f"http://127.0.0.1:{free_port()}"  # the web service: API and console
        self.proc = subprocess.Popen([sys.executable, "-m", "registre", "run", "--http",
                                      self.http.removeprefix("http://")],
                                     env=self.env, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self.settings.runtime().get("processors"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"registre run did not start; see {self.home / 'run.log'}")
            time.sleep(0.1)
        self.say(f"started the embedded broker ({self.registre.kafka}), PostgreSQL, one"
                 f" processor worker and the web service ({self.http}) in {self.home}")

    def wait(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while backlog(self.registre.kafka, self.registre.url("compliance")):
            if time.monotonic() > deadline:
                raise UserError("the processors did not catch up in time")
            time.sleep(0.1)

    def publish(self, events: list[dict[str, Any]], allow_registre: bool = False) -> None:
        with self.registre.publisher(allow_registre=allow_registre) as publisher:
            report = publisher.publish_many(events)
        if report.rejected:
            raise UserError(f"demo event rejected: {report.rejected[0][1]}")

    def view(self, subject: str) -> dict[str, Any]:
        return brief(self.desk.view(subject))

    def keys(self, subject: str) -> list[str]:
        """The subject's keys left in the key store, as category[/period]."""
        with self.registre.keystore() as keystore:
            refs = keystore.key_refs(subject)
        return [f"{r.category}{'/' + r.period if r.period else ''}" for r in refs]

    def pick(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> str:
        return next(s for s, evs in sorted(by_subject(self.events).items()) if predicate(evs))

    def serve_until_interrupted(self) -> None:
        """Keep everything up (the console answers) until Ctrl-C, or until it stops."""
        self.say("everything stays up: Ctrl-C stops it")
        try:
            while self.proc is not None and self.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print(flush=True)

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


def free_port() -> int:
    """A TCP port free on the loopback now (the web service binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def by_subject(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(e["subject_id"], []).append(e)
    return dict(sorted(out.items()))


def types(events: list[dict[str, Any]]) -> set[str]:
    return {e["type"] for e in events}

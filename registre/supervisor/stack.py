"""What `registre run` runs, in order: the embedded services where needed, the archive restore,
the journal's relay, the processor workers, the web service; then it watches them all and
restarts whichever dies, and stops them in the order that loses nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from events import journal
from processors.app import PROCESSOR_GROUP
from projections.archive import LogShorter, restore_if_needed
from projections.positions import align_group, backlog
from registre.errors import UserError
from registre.services.embedded import Runtime
from registre.settings import Settings
from registre.supervisor.children import Child, stop_all, utc_now

log = structlog.get_logger("registre.run")
DRAIN_SECONDS = 60.0


def service_env(settings: Settings, runtime: Runtime, *roles: str) -> dict[str, str]:
    """A child's environment: the broker, and the database logins of ``roles`` only (the first
    is also its REGISTRE_DATABASE_URL): no child connects as the owner."""
    env = dict(settings.env)
    env.update({f"REGISTRE_DATABASE_URL_{r.upper()}": runtime.url_for(r) for r in roles})
    env.update(REGISTRE_KAFKA=runtime.kafka, REGISTRE_DATABASE_URL=runtime.url_for(roles[0]),
               REGISTRE_HOME=str(settings.home),
               REGISTRE_JOURNAL="1" if settings.journal else "0",
               REGISTRE_EMBEDDED="1" if runtime.embedded_broker else "0")
    return env


class Stack:
    """The running stack; ``children`` maps a name to its supervised process."""

    def __init__(self, settings: Settings, workers: int,
                 spawners: dict[str, Callable[[Stack], Any]]) -> None:
        self.settings = settings
        self.workers = workers
        self.spawners = spawners  # name -> start function, given this stack
        self.runtime = Runtime(settings)
        self.children: dict[str, Child] = {}
        self.services: dict[str, dict[str, Any]] = {}

    # --- start ---------------------------------------------------------------------------------

    def start(self, keys: Callable[[], None]) -> int:
        """Everything up, events accepted; returns how many records the archive gave back."""
        self.runtime.start()
        keys()
        self._gate(False, "registre is starting")
        restored = self._restore()
        align_group(self.runtime.kafka, self.runtime.database_url, PROCESSOR_GROUP)
        for name in self._child_names():
            self.children[name] = Child(name, lambda n=name: self.spawners[n.split("-")[0]](
                self, n))
        for name, service in (("broker", self.runtime.broker),
                              ("database", self.runtime.postgres)):
            if service is not None:
                self.services[name] = {"up_since": utc_now(), "restarts": 0, "last_error": None}
        self._gate(True)
        return restored

    def _child_names(self) -> list[str]:
        names = ["relay"] if self.settings.journal else []
        names += [f"worker-{i}" for i in range(self.workers)]
        return names + (["web"] if "web" in self.spawners else [])

    def _restore(self) -> int:
        try:
            return restore_if_needed(self.runtime.kafka, self.runtime.database_url,
                                     can_restore=self.runtime.embedded_broker)
        except LogShorter as exc:
            raise UserError(str(exc)) from None

    def _gate(self, open_: bool, reason: str | None = None) -> None:
        """Accept events or not (the journal's gate; nothing to do without the journal)."""
        if not self.settings.journal:
            return
        with psycopg.connect(self.runtime.database_url, autocommit=True) as conn:
            journal.set_gate(conn, open_, reason)

    # --- watch ---------------------------------------------------------------------------------

    def watch(self) -> bool:
        """One round: restart what died; True when something changed."""
        changed = False
        for service in self.runtime.down():
            self._revive(service)
            changed = True
        for child in self.children.values():
            changed = child.watch() or changed
        return changed

    def _revive(self, service: str) -> None:
        state = self.services[service]
        state["last_error"] = f"died at {utc_now()}"
        log.warning("embedded service died, restarting", service=service)
        if service == "database":
            self.runtime.restart_database()
        else:  # an empty broker: the archive back, the relay hands on what it lost
            workers = [c for n, c in self.children.items() if n != "web"]
            stop_all([c.proc for c in workers], timeout=10)
            self.runtime.restart_broker()
            self._restore()
            align_group(self.runtime.kafka, self.runtime.database_url, PROCESSOR_GROUP)
            for child in workers:
                child.restart()
        state["restarts"] += 1
        state["up_since"] = utc_now()

    def describe(self) -> dict[str, Any]:
        """Each service's real state, for runtime.json and `registre info`."""
        pids = {"broker": self.runtime.broker.pid if self.runtime.broker else None,
                "database": self.runtime.postgres.pid if self.runtime.postgres else None}
        out = {name: {"pid": pids[name], **state} for name, state in self.services.items()}
        out.update({name: child.state() for name, child in self.children.items()})
        return out

    # --- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Refuse new events, drain what was accepted, then stop everything."""
        try:
            self._gate(False, "registre is stopping")
        except psycopg.Error:
            pass  # the database is down: nothing can be accepted anyway
        web = self.children.pop("web", None)
        if web is not None:
            stop_all([web.proc])
        try:
            left = self._drain(DRAIN_SECONDS)
            if left:
                log.warning("stopped before everything was applied", backlog=left)
        finally:
            stop_all([c.proc for c in self.children.values()])
            self.runtime.stop()

    def _drain(self, timeout: float) -> int:
        """Wait until everything accepted is relayed, applied and archived."""
        deadline = time.monotonic() + timeout
        remaining = -1
        while time.monotonic() < deadline:
            try:
                remaining = backlog(self.runtime.kafka, self.runtime.url_for("compliance"))
            except Exception:  # noqa: BLE001 - a dead broker or database: wait, then give up
                remaining = -1
            if remaining == 0:
                return 0
            self.watch()
            time.sleep(0.2)
        return remaining

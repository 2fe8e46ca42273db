"""Start and stop the embedded default under REGISTRE_HOME and record where it listens.

Where REGISTRE_KAFKA or REGISTRE_DATABASE_URL is set, that service is used instead and only
the other one is embedded. Either way the topics of the manifest are created and the
migrations applied before anything else runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from deploy.runtime import EmbeddedBroker, EmbeddedPostgres
from deploy.topics import ensure_topics
from events.keystore import reapply_tombstones
from projections.migrate import migrate
from projections.roles import RolesMissing, ensure_analyst_login
from registre.settings import Settings, pid_alive

log = structlog.get_logger("registre.runtime")


class AlreadyRunning(Exception):
    """Another `registre run` owns this REGISTRE_HOME."""


@dataclass
class Runtime:
    settings: Settings
    kafka: str = ""
    database_url: str = ""
    broker: EmbeddedBroker | None = None
    postgres: EmbeddedPostgres | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> Runtime:
        s = self.settings
        info = s.runtime()
        if pid_alive(info.get("pid")) and info.get("pid") != os.getpid():
            raise AlreadyRunning(f"registre already runs in {s.home} (pid {info['pid']})")
        s.home.mkdir(parents=True, exist_ok=True)
        try:
            if s.database_url:
                self.database_url = s.database_url
            else:
                self.postgres = EmbeddedPostgres(s.home)
                self.database_url = self.postgres.start()
            if s.kafka:
                self.kafka = s.kafka
            else:
                self.broker = EmbeddedBroker(s.home)
                self.kafka = self.broker.start()
            ensure_topics(self.kafka)
            applied = migrate(self.database_url)
            if applied:
                log.info("migrations applied", names=applied)
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                again = reapply_tombstones(conn)  # a restored key store stays scrubbed
            if again:
                log.warning("destroyed keys found again and destroyed", keys=again)
            self.extra["analyst_database_url"] = self._analyst_login()
        except BaseException:
            self.stop()
            raise
        self.record()
        return self

    def _analyst_login(self) -> str | None:
        """The analysts' login (read-only, the `analytics` views only), where we may create it."""
        try:
            return ensure_analyst_login(self.database_url)
        except (psycopg.Error, RolesMissing, PermissionError) as exc:
            log.warning("no analyst login created", reason=type(exc).__name__)
            return None

    @property
    def embedded_broker(self) -> bool:
        return self.broker is not None

    def record(self, **extra: Any) -> None:
        """Write HOME/runtime.json (atomically) so that other commands find us."""
        self.extra.update(extra)
        data = {
            "pid": os.getpid(),
            "home": str(self.settings.home),
            "kafka": self.kafka,
            "database_url": self.database_url,
            "embedded": {"broker": self.broker is not None, "database": self.postgres is not None},
            "started_at": datetime.now(UTC).isoformat(),
            **self.extra,
        }
        tmp = self.settings.runtime_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.settings.runtime_file)

    def stop(self) -> None:
        """Stop what we started; remove runtime.json. Safe to call twice."""
        if self.broker:
            self.broker.stop()
            self.broker = None
        if self.postgres:
            self.postgres.stop()
            self.postgres = None
        info = self.settings.runtime()
        if info.get("pid") == os.getpid():
            self.settings.runtime_file.unlink(missing_ok=True)

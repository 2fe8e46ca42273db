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
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import structlog

from deploy.runtime import EmbeddedBroker, EmbeddedPostgres
from deploy.topics import ensure_topics
from events.crypto import MasterKeyError, load_master_key, store_signing_key
from events.keystore import reapply_tombstones
from projections.integrity_store import legacy_signing_key
from projections.migrate import migrate
from projections.roles import (
    ADMIN,
    ANALYST,
    COMPLIANCE,
    PROCESSOR,
    PUBLISHER,
    ensure_login,
    login_url,
)
from registre.files import read_or_create_secret, write_private
from registre.settings import ROLES, Settings, pid_alive

log = structlog.get_logger("registre.runtime")


class AlreadyRunning(Exception):
    """Another `registre run` owns this REGISTRE_HOME."""


GROUPS = {"processor": PROCESSOR, "publisher": PUBLISHER, "compliance": COMPLIANCE,
          "analyst": ANALYST, "admin": ADMIN}


def _passfile_url(url: str, login: str, passfile: Path) -> str:
    """The login's URL with no password in it: libpq reads it from ``passfile`` (0600)."""
    sep = "&" if "?" in url else "?"
    return f"{login_url(url, login)}{sep}passfile={quote(str(passfile), safe='/')}"


@dataclass
class Runtime:
    settings: Settings
    kafka: str = ""
    database_url: str = ""  # the owner's: migrations and start-up only
    base_url: str = ""  # the embedded server's, with no user
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
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
            self._start_services()
            ensure_topics(self.kafka)
            self._move_legacy_signing_key()
            applied = migrate(self.database_url)
            if applied:
                log.info("migrations applied", names=applied)
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                again = reapply_tombstones(conn)  # a restored key store stays scrubbed
            if again:
                log.warning("destroyed keys found again and destroyed", keys=again)
            self.extra.update(self._logins())
        except BaseException:
            self.stop()
            raise
        return self  # runtime.json is recorded once the stack accepts events

    def _start_services(self) -> None:
        s = self.settings
        if s.database_url:
            self.database_url = s.url_for("owner")
        else:
            password = read_or_create_secret(s.secrets_dir / "postgres.password")
            self.postgres = EmbeddedPostgres(s.home, password)
            self.base_url = self.postgres.start()
            passfile = self._passfile({"postgres": password})
            self.database_url = _passfile_url(self.base_url, "postgres", passfile)
        if s.kafka:
            self.kafka = s.kafka
        else:
            self.broker = EmbeddedBroker(s.home)
            self.kafka = self.broker.start()

    def _move_legacy_signing_key(self) -> None:
        """An older registre kept the signing key in PostgreSQL wrapped by the master key:
        move it to HOME/signing.key (0600) once, before migration 009 drops it."""
        s = self.settings
        target = Path(s.env.get("REGISTRE_SIGNING_KEY_FILE") or s.home / "signing.key")
        if s.env.get("REGISTRE_SIGNING_KEY") or target.exists():
            return
        try:
            master, _ = load_master_key(dict(s.env), s.home, generate=False)
        except MasterKeyError:
            return  # a new home: nothing was ever signed
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            key = legacy_signing_key(conn, master)
        if key is not None:
            store_signing_key(target, key)
            log.info("signing key moved out of the database", file=str(target))

    def _passfile(self, passwords: dict[str, str]) -> Path:
        """The libpq password file of the embedded logins (0600), for every login known."""
        path = self.settings.secrets_dir / "pgpass"
        known = dict(line.rsplit(":", 1) for line in
                     (path.read_text().splitlines() if path.exists() else []) if line)
        known.update({f"*:*:*:{login}": pw for login, pw in passwords.items()})
        write_private(path, "".join(f"{k}:{v}\n" for k, v in sorted(known.items())))
        return path

    def _logins(self) -> dict[str, Any]:
        """One login per role, each a member of its group only, with a generated password."""
        s = self.settings
        if s.database_url:  # external: the operator made the logins (README, Production)
            return {"database_urls": {r: s.url_for(r) for r in ROLES}}
        passwords = {ROLES[role]: read_or_create_secret(s.secrets_dir / f"{ROLES[role]}.password")
                     for role in GROUPS}
        passfile = self._passfile(passwords)
        urls = {"owner": self.database_url}
        for role, group in GROUPS.items():
            login = ROLES[role]
            ensure_login(self.database_url, group, login, passwords[login])
            urls[role] = _passfile_url(self.base_url, login, passfile)
        # the analyst's own password goes in the analyst's URL: an unprivileged login, for a
        # person who may not read this home
        urls["analyst"] = login_url(self.base_url, ROLES["analyst"], passwords[ROLES["analyst"]])
        return {"database_urls": urls, "analyst_database_url": urls["analyst"]}

    @property
    def embedded_broker(self) -> bool:
        return self.broker is not None

    def down(self) -> list[str]:
        """The embedded services that died: "broker", "database"."""
        out = []
        if self.broker is not None and not self.broker.alive:
            out.append("broker")
        if self.postgres is not None and not self.postgres.alive:
            out.append("database")
        return out

    def restart_broker(self) -> None:
        """The embedded broker again, on the same port, with the manifest's topics (empty: the
        caller restores the archive)."""
        assert self.broker is not None
        self.broker.stop()
        self.kafka = self.broker.start()
        ensure_topics(self.kafka)

    def restart_database(self) -> None:
        assert self.postgres is not None
        self.postgres.restart()

    def url_for(self, role: str) -> str:
        return self.extra.get("database_urls", {}).get(role) or self.database_url

    def record(self, **extra: Any) -> None:
        """Write HOME/runtime.json (0600, atomically) so that other commands find us."""
        self.extra.update(extra)
        data: dict[str, Any] = {
            "pid": os.getpid(),
            "home": str(self.settings.home),
            "kafka": self.kafka,
            "database_url": self.database_url,
            "embedded": {"broker": self.broker is not None, "database": self.postgres is not None},
            "started_at": self.started_at,
            **self.extra,
        }
        write_private(self.settings.runtime_file, json.dumps(data, indent=2))

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

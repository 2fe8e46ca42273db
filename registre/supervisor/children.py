"""The child processes `registre run` supervises: spawned with only the logins they need,
killed with their parent (no orphan when `registre run` dies), restarted when they die, after a
growing pause when they keep dying, and described for `registre info`."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("registre.run")
MAX_BACKOFF = 30.0
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: the child gets SIGKILL when `registre run` dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def spawn(module: str, env: dict[str, str], logfile: Path) -> subprocess.Popen:
    """``python -m module``, its output appended to ``logfile``."""
    with open(logfile, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def stop_all(procs: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """SIGTERM each at once, then wait for each; SIGKILL what does not exit in time."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Child:
    """One supervised process: its pid, since when it runs, how often it was restarted."""

    def __init__(self, name: str, start: Callable[[], subprocess.Popen]) -> None:
        self.name = name
        self._start = start
        self.restarts = 0
        self.last_error: str | None = None
        self.backoff = 1.0
        self.due: float | None = None
        self.proc = start()
        self.started = time.monotonic()
        self.up_since = utc_now()

    def watch(self) -> bool:
        """Restart it when it died (after its pause); True when something changed."""
        now = time.monotonic()
        if self.due is None and self.proc.poll() is not None:
            self.last_error = f"exited with code {self.proc.returncode} at {utc_now()}"
            log.warning("child exited, restarting", child=self.name, code=self.proc.returncode)
            quick = now - self.started < 10
            self.backoff = min(MAX_BACKOFF, self.backoff * 2) if quick else 1.0
            self.due = now + self.backoff
            return True
        if self.due is not None and now >= self.due:
            self.restart()
            return True
        return False

    def restart(self) -> None:
        """Stop it if it runs, start it again (counted)."""
        stop_all([self.proc], timeout=10)
        self.proc, self.started, self.up_since = self._start(), time.monotonic(), utc_now()
        self.restarts += 1
        self.due = None

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.proc.pid, "up_since": self.up_since,
                "restarts": self.restarts, "last_error": self.last_error}

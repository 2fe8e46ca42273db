"""`/readyz`: is this registre able to take events and answer questions right now?

Ready means: the database answers, the broker answers, at least one processor has beaten its
heart in the last 30 seconds, and the processors are not stuck. Stuck is defined simply: events
are waiting (lag > 0) and the applied positions have not moved for ``stuck_seconds``. A lag
that is being worked off, however large, is not stuck. The answer carries counts only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from events.log import LogReader
from projections.positions import applied_positions

STUCK_SECONDS = 60.0
CACHE_SECONDS = 1.0


class Readiness:
    """Remembers the last applied positions to tell a busy processor from a stuck one."""

    def __init__(self, kafka: str, database_url: str, stuck_seconds: float = STUCK_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.kafka = kafka
        self.database_url = database_url
        self.stuck_seconds = stuck_seconds
        self._now = monotonic
        self._positions: dict[int, int] | None = None
        self._moved_at = monotonic()
        self._last: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def check(self) -> dict[str, Any]:
        """``{"ready": bool, "checks": {...}, "error": str | None}`` (at most once a second)."""
        with self._lock:
            if self._last is not None and self._now() - self._last[0] < CACHE_SECONDS:
                return self._last[1]
            answer = self._check()
            self._last = (self._now(), answer)
            return answer

    def _check(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                alive = conn.execute(
                    "SELECT count(*) FILTER (WHERE heartbeat_at > now() - interval '30 seconds')"
                    " FROM projections.processors").fetchone()[0]
                applied = applied_positions(conn)
            checks["database"] = "ok"
        except psycopg.Error as exc:
            return _not_ready(checks, f"database unreachable ({type(exc).__name__})")
        checks["processors_alive"] = alive
        try:
            with LogReader(self.kafka) as reader:
                ends = reader.end_offsets()
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means the broker is not usable
            return _not_ready(checks, f"broker unreachable ({type(exc).__name__})")
        lag = sum(max(0, end - applied.get(p, 0)) for p, end in ends.items())
        checks["lag"] = lag
        if applied != self._positions:
            self._positions, self._moved_at = applied, self._now()
        still = self._now() - self._moved_at
        if alive == 0:
            return _not_ready(checks, "no processor has sent a heartbeat in the last 30 s")
        if lag and still > self.stuck_seconds:
            return _not_ready(checks, f"processors stuck: {lag} event(s) waiting and nothing "
                                      f"applied for {still:.0f} s")
        return {"ready": True, "checks": checks, "error": None}


def _not_ready(checks: dict[str, Any], error: str) -> dict[str, Any]:
    return {"ready": False, "checks": checks, "error": error}

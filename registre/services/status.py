"""`registre info`: where the broker, the database and the processors are."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import psycopg
from kafka.admin import KafkaAdminClient

from projections.problems import open_problems
from registre.errors import UserError
from registre.settings import Settings, pid_alive, safe_url


def describe(settings: Settings) -> dict[str, Any]:
    """Where things are and how they are; no password of a privileged login in it."""
    kafka, database_url = settings.endpoints("compliance")
    runtime = settings.runtime()
    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka, request_timeout_ms=5000,
                                 bootstrap_timeout_ms=5_000,
                                 client_id="registre-info")
        topics = sorted(t for t in admin.list_topics() if not t.startswith("__"))
        admin.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not running"
        raise UserError(f"broker {kafka} does not answer ({type(exc).__name__})") from None
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            processors = _processors(conn)
            problems = open_problems(conn)
    except psycopg.OperationalError:
        raise UserError("database does not answer") from None
    return {
        "home": str(settings.home),
        "kafka": kafka,
        "database_url": safe_url(runtime.get("database_url") or settings.url_for("owner")),
        "analyst_database_url": runtime.get("analyst_database_url"),
        "http": served(runtime.get("http")),
        "topics": topics,
        "processors": processors,
        "services": services(runtime),
        "problems": problems,
    }


def served(url: Any) -> str | None:
    """The web service's URL while it answers ``/healthz``, else None."""
    if not isinstance(url, str) or not url.startswith("http://"):
        return None
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as answer:  # noqa: S310
            return url if answer.status == 200 else None
    except OSError:
        return None


def _processors(conn: psycopg.Connection) -> list[dict[str, Any]]:
    exists = conn.execute("SELECT to_regclass('projections.processors')").fetchone()[0]
    if not exists:
        return []
    rows = conn.execute(
        "SELECT worker_id, pid, host, started_at, heartbeat_at,"
        " heartbeat_at > now() - interval '30 seconds' FROM projections.processors"
        " ORDER BY worker_id"
    ).fetchall()
    here = socket.gethostname()
    return [
        {"worker_id": w, "pid": pid, "host": host, "started_at": s.isoformat(),
         "heartbeat_at": h.isoformat(),
         # on this machine, whether the process runs (at once); elsewhere, a recent heartbeat
         "alive": pid_alive(pid) if host == here else fresh}
        for w, pid, host, s, h, fresh in rows
    ]


def services(runtime: dict[str, Any]) -> dict[str, Any]:
    """Each supervised service as `registre run` last recorded it, alive or not now."""
    return {name: {**state, "alive": pid_alive(state.get("pid"))}
            for name, state in (runtime.get("services") or {}).items()}

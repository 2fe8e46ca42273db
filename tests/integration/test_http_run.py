"""`registre run` serves the web service: the whole real stack (embedded broker, PostgreSQL, a
processor worker, the web child process), `registre info` shows where, a dead web service is
restarted, Ctrl-C stops it with the rest; and schemathesis runs over its `/openapi.json`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
import workers as w
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from registre.settings import Settings
from tests.integration.web import free_port, registre, token, wait_healthy
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 12


@dataclass
class Running:
    env: dict[str, str]
    home: Path
    url: str
    proc: subprocess.Popen
    token: str


def _web_pids(port: int) -> list[int]:
    """The `python -m registre.web` processes listening on ``port`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"registre.web" in cmd and f"REGISTRE_HTTP=127.0.0.1:{port}".encode() in env:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("run-http")
    env = w.base_env()
    env["REGISTRE_HOME"] = str(root / "home")
    port = free_port()
    with open(root / "run.err", "wb") as err:
        proc = subprocess.Popen([REGISTRE, "run", "--http", f"127.0.0.1:{port}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=err, cwd=w.ROOT,
                                stdin=subprocess.DEVNULL)
    settings = Settings.from_env(env)
    deadline = time.monotonic() + 90
    while not settings.runtime().get("processors"):
        assert proc.poll() is None, (root / "run.err").read_text()
        assert time.monotonic() < deadline, (root / "run.err").read_text()
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, root / "home" / "web.log")
    try:
        yield Running(env, root / "home", url, proc,
                      token(env, "schemathesis", "publish", "compliance"))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_run_serves_http_restarts_it_and_stops_it(running: Running) -> None:
    info = registre(running.env, "info")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["http"] == running.url
    auth = {"Authorization": f"Bearer {running.token}"}
    events = w.story()
    answer = httpx.post(running.url + "/v1/events", json={"events": events}, headers=auth)
    assert answer.json() == {"published": len(events), "rejected": [], "redacted": []}
    assert registre(running.env, "wait", "--timeout", "60").returncode == 0
    view = httpx.get(f"{running.url}/v1/subjects/{w.ACTIVE}", params={"case": "RUN-1"},
                     headers=auth)
    assert view.json()["contact"] == w.CONTACT
    assert httpx.get(running.url + "/readyz").json()["ready"] is True

    port = int(running.url.rsplit(":", 1)[1])
    (pid,) = _web_pids(port)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _web_pids(port) in ([], [pid]):
        assert time.monotonic() < deadline, "the web service was not restarted"
        time.sleep(0.2)
    wait_healthy(running.url, running.proc, running.home / "web.log")


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_every_answer_matches_the_document(
        running: Running) -> None:
    schema = schemathesis.openapi.from_url(running.url + "/openapi.json")
    auth = {"Authorization": f"Bearer {running.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=running.url, headers=auth, checks=CHECKS)

        exercise()
    log = (running.home / "web.log").read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log
    asked = {line.split("route=")[1].split()[0] for line in log.splitlines() if "route=" in line}
    assert len(asked) >= len(operations) - 1, asked  # every route was exercised


def test_ctrl_c_stops_the_web_service_with_the_rest(running: Running) -> None:
    """Last of the module: stops the shared `registre run`."""
    port = int(running.url.rsplit(":", 1)[1])
    running.proc.send_signal(signal.SIGINT)
    assert running.proc.wait(90) == 0
    assert _web_pids(port) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(running.url + "/healthz", timeout=2)
    assert not (running.home / "runtime.json").exists()

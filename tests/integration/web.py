"""Helpers of the web service's tests: a real `registre serve` process on a free port, real
HTTP (httpx), tokens made by the real `registre tokens create`."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import workers as w

from registre.supervisor.children import die_with_parent
from tests.integration.workers import REGISTRE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registre(env: dict[str, str], *args: str, stdin: str | None = None
             ) -> subprocess.CompletedProcess:
    return subprocess.run([REGISTRE, *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=120, cwd=w.ROOT)


def token(env: dict[str, str], name: str, *scopes: str) -> str:
    args = [a for s in scopes for a in ("--scope", s)]
    done = registre(env, "tokens", "create", name, *args)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["name"] == name and sorted(answer["scopes"]) == sorted(scopes)
    return answer["token"]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the web service exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"no answer from {url}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


class Server:
    """`registre serve --http 127.0.0.1:PORT` against the environment's broker and database."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logfile = home / "serve.log"
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [REGISTRE, "serve", "--http", f"127.0.0.1:{self.port}"], env=env, cwd=w.ROOT,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent)  # no orphan if the test run is killed
        wait_healthy(self.url, self.proc, self.logfile)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Client:
    """Real HTTP with one token."""

    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        if body is None:
            return self.http.post(path, **kw)
        return self.http.post(path, json=body, **kw)

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(path)

    def close(self) -> None:
        self.http.close()

"""`registre demo` from a fresh REGISTRE_HOME: the whole story runs, prints the views and
stops cleanly, leaving nothing running; with ``--serve`` the console stays up until Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import httpx
import pytest
import workers as w

from registre.supervisor.children import die_with_parent
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration


def test_demo_runs_start_to_finish(tmp_path):
    env = w.base_env()
    env["REGISTRE_HOME"] = str(tmp_path / "home")
    elsewhere = tmp_path / "cwd"  # where a user runs it from: left as it was
    elsewhere.mkdir()
    done = subprocess.run([REGISTRE, "demo"], env=env, capture_output=True, text=True,
                          timeout=180, cwd=elsewhere, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    assert "--- customer view of" in out
    assert "status: active" in out and "status: deleted" in out
    assert "identity:" in out and "consents:" in out and "authorisations:" in out
    assert "matching:\n  type: export" in out
    assert "the compliance console answers, and the demo's officer logged in to it" in out
    assert "/console/\nlog in as demo-officer with the password " in out
    assert "stopped cleanly" in out.rstrip().splitlines()[-1]
    demo_home = tmp_path / "home" / "demo"
    assert (demo_home / "master.key").exists()
    assert not (demo_home / "runtime.json").exists(), "registre run did not stop cleanly"
    assert list(elsewhere.iterdir()) == []  # Faust's directory too is under REGISTRE_HOME
    assert (demo_home / "faust").is_dir()
    left = [line for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True,
                                            text=True).stdout.splitlines()
            if str(demo_home) in line]
    assert left == [], "processes of the demo are still running"


def test_demo_serve_keeps_the_console_up_until_ctrl_c(tmp_path):
    env = w.base_env()
    env["REGISTRE_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen([REGISTRE, "demo", "--serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=w.ROOT,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        lines = until(proc, "everything stays up: Ctrl-C stops it")
        at = lines.index("--- the compliance console")
        console, login = lines[at + 1], lines[at + 2]
        password = re.fullmatch(r"log in as demo-officer with the password (\S+) \(shown once\)",
                                login).group(1)
        time.sleep(2)  # still up after the demo's story has ended
        with httpx.Client(base_url=console.removesuffix("/console/"), timeout=30,
                          follow_redirects=True) as http:
            page = http.get("/console/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            page = http.post("/console/login", data={
                "username": "demo-officer", "password": password, "csrf": csrf,
                "next": "/console/requests"})
            assert page.status_code == 200 and page.url.path == "/console/requests"
            assert "Signed in as" in page.text
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest[-3000:]
    assert "Traceback" not in rest and "stopped cleanly" in rest.rstrip().splitlines()[-1]
    assert not (tmp_path / "home" / "demo" / "runtime.json").exists()


def until(proc: subprocess.Popen, marker: str, timeout: float = 180) -> list[str]:
    """The demo's output lines up to ``marker`` (its process still running)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the demo ended early:\n" + "\n".join(lines[-40:]))
        lines.append(line.rstrip("\n"))
        if line.rstrip().endswith(marker):
            return lines
    raise AssertionError(f"no {marker!r} in {timeout} s")

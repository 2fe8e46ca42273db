"""`registre demo` from a fresh REGISTRE_HOME: the whole story runs, prints the views and
stops cleanly, leaving nothing running."""

from __future__ import annotations

import subprocess

import pytest
import workers as w

from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration


def test_demo_runs_start_to_finish(tmp_path):
    env = w.base_env()
    env["REGISTRE_HOME"] = str(tmp_path / "home")
    done = subprocess.run([REGISTRE, "demo"], env=env, capture_output=True, text=True,
                          timeout=180, cwd=w.ROOT, stdin=subprocess.DEVNULL)
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
    left = [line for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True,
                                            text=True).stdout.splitlines()
            if str(demo_home) in line]
    assert left == [], "processes of the demo are still running"

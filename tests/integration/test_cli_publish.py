"""`registre publish FILE` as a user runs it: the console script in a subprocess, against a real
broker and PostgreSQL, checking stdout, stderr, the exit code and what reached the topic."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest

from deploy.runtime import free_port
from events.codec import decode
from events.log import LogReader
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def example(name: str, line: int = 1) -> dict:
    text = (EXAMPLES / f"{name}.valid.jsonl").read_text(encoding="utf-8").splitlines()[line - 1]
    return json.loads(text)


def invalid(name: str, field: str) -> dict:
    for text in (EXAMPLES / f"{name}.invalid.jsonl").read_text(encoding="utf-8").splitlines():
        case = json.loads(text)
        if case["field"] == field:
            return case["event"]
    raise LookupError(field)


def without(event: dict, field: str) -> dict:
    return {**event, "data": {k: v for k, v in event["data"].items() if k != field}}


@pytest.fixture
def env(registre_env, broker, database_url, master_key) -> dict[str, str]:
    return {
        **registre_env,
        "REGISTRE_KAFKA": broker,
        "REGISTRE_DATABASE_URL": database_url,
        "REGISTRE_MASTER_KEY": base64.b64encode(master_key).decode(),
    }


def publish(env: dict[str, str], file: str, stdin: bytes | None = None, timeout: float = 60):
    return subprocess.run(
        [REGISTRE, "publish", file], env=env, input=stdin, capture_output=True, timeout=timeout,
    )


def write_lines(path: Path, lines: list) -> str:
    """Each item a dict (one JSON line) or raw text (written as is)."""
    text = "".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n"
                   for x in lines)
    path.write_text(text, encoding="utf-8")
    return str(path)


def published_ids(broker: str) -> list[str]:
    with LogReader(broker) as reader:
        return [decode(r.value).event_id for r in reader.read()]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("registre publish: ")
    return lines[0]


def test_mixed_file_publishes_exactly_the_good_lines(env, broker, tmp_path):
    good = [example("AccountCreated", 1), example("ConsentGiven", 1),
            example("ConnectionRecorded", 1)]
    path = write_lines(tmp_path / "mixed.jsonl", [
        good[0],                                                  # 1
        '{"event_id": "5b0f7f5e-8c1e-4d43-9b43-6f1f0b1f2a10",',   # 2 bad JSON
        good[1],                                                  # 3
        {**example("ConsentGiven", 2), "type": "ConsentGranted"},  # 4 unknown type
        "",                                                       # 5 blank: skipped
        without(example("AccountCreated", 2), "email"),           # 6 missing field (email)
        good[2],                                                  # 7
        invalid("AccountCreated", "data.over_15"),                # 8 over_15 false
        invalid("ConsentGiven", "data.purposes"),                 # 9 wrong type
        example("ConsentExpired", 1),                             # 10 registre's own type
    ])
    proc = publish(env, path)
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    assert answer["published"] == 3
    assert [r["line"] for r in answer["rejected"]] == [2, 4, 6, 8, 9, 10]
    errors = [r["error"] for r in answer["rejected"]]
    assert errors[0].startswith("not JSON")
    assert errors[1].startswith("type: ")
    assert errors[2] == "data.email: is required"
    assert errors[3].startswith("data.over_15: ")
    assert errors[4].startswith("data.purposes: ")
    assert errors[5].startswith("type: ")
    assert "6 line(s) rejected" in one_line_error(proc)
    assert sorted(published_ids(broker)) == sorted(e["event_id"] for e in good)


def test_all_good_exits_0_and_republishing_sends_the_same_event_ids(env, broker):
    path = str(EXAMPLES / "AccountCreated.valid.jsonl")
    ids = [example("AccountCreated", n)["event_id"] for n in (1, 2, 3)]
    for _ in range(2):
        proc = publish(env, path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"published": 3, "rejected": []}
        assert proc.stderr.strip() == b""
    assert sorted(published_ids(broker)) == sorted(ids * 2)  # dedup happens downstream


def test_dash_reads_stdin(env, broker):
    data = (EXAMPLES / "ConsentGiven.valid.jsonl").read_bytes()
    proc = publish(env, "-", stdin=data)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"published": 2, "rejected": []}
    assert sorted(published_ids(broker)) == sorted(
        example("ConsentGiven", n)["event_id"] for n in (1, 2))


BAD_LINES = {
    "unknown type": ({**example("AccountDeleted", 1), "type": "AccountRemoved"}, "type: "),
    "missing field": (invalid("LegalHoldReleased", "data.case_ref"), "data.case_ref: "),
    "wrong type": (invalid("DataShared", "data.service"), "data.service: "),
    "bad JSON": ("{'type': 'AccountCreated'}", "not JSON"),
    "not an object": ("[1, 2, 3]", "event: "),
    "huge number": ('{"event_id": ' + "9" * 5000 + "}", "not JSON"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "not JSON"),
    "not UTF-8": (b'{"type": "\xc3\x28"}', "not UTF-8"),
    "lone surrogate": ('{"event_id": "5b0f7f5e-8c1e-4d43-9b43-6f1f0b1f2a10", "type": '
                       '"ConsentGiven", "subject_id": "acc-1", "occurred_at": '
                       '"2026-03-01T09:30:00Z", "source": "web\\ud800", "data": {}}',
                       "source: not valid Unicode"),
    "surrogate field name": ('{"\\udcff": 1}', "\\udcff: unknown field"),
    "10 MB line": (
        json.dumps({**example("AccountCreated", 1),
                    "source": "x" * (10 << 20)}), "line is "),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_line_is_rejected_in_one_line_and_publishes_nothing(kind, env, broker, tmp_path):
    line, error = BAD_LINES[kind]
    path = tmp_path / "bad.jsonl"
    if isinstance(line, bytes):
        path.write_bytes(line + b"\n")
    else:
        write_lines(path, [line])
    proc = publish(env, str(path))
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    assert answer["published"] == 0
    assert [r["line"] for r in answer["rejected"]] == [1]
    assert answer["rejected"][0]["error"].startswith(error)
    assert len(answer["rejected"][0]["error"]) < 200
    assert "1 line(s) rejected" in one_line_error(proc)
    assert published_ids(broker) == []


@pytest.mark.parametrize("content", [b"", b"\n  \n"], ids=["0 bytes", "blank lines"])
def test_empty_file(content, env, broker, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    proc = publish(env, str(path))
    assert proc.returncode != 0
    assert proc.stdout == b""
    assert "empty" in one_line_error(proc)
    assert published_ids(broker) == []


def test_a_directory_is_not_a_file(env, tmp_path):
    proc = publish(env, str(tmp_path))
    assert proc.returncode != 0
    one_line_error(proc)


def test_missing_file(env, tmp_path):
    proc = publish(env, str(tmp_path / "nope.jsonl"))
    assert proc.returncode != 0
    assert proc.stdout == b""
    assert "no such file" in one_line_error(proc)


def test_no_master_key(env, broker):
    env = {k: v for k, v in env.items() if k != "REGISTRE_MASTER_KEY"}
    proc = publish(env, str(EXAMPLES / "ConsentGiven.valid.jsonl"))
    assert proc.returncode != 0
    assert "master key" in one_line_error(proc)
    assert published_ids(broker) == []


def test_broker_down_fails_fast_in_one_line(env, tmp_path):
    env = {**env, "REGISTRE_KAFKA": f"127.0.0.1:{free_port()}"}  # nothing listens there
    start = time.monotonic()
    proc = publish(env, str(EXAMPLES / "AccountCreated.valid.jsonl"), timeout=60)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert proc.stdout == b""
    message = one_line_error(proc)
    assert "broker" in message.lower()
    print(f"broker down: failed in {elapsed:.1f}s: {message}")
    assert elapsed < 20, f"took {elapsed:.1f}s"

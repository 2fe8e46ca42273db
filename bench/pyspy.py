"""Sampling profiles of a benchmarked process with py-spy, summed into named stages.

``Recorder(pid)`` attaches ``py-spy record --format raw --threads --idle --nonblocking`` to a
running process and stops it on demand; ``summarise`` reads the collapsed stacks and gives
each thread's samples per stage. A sample is put in the stage of its deepest frame that
matches a rule (so Avro decoding inside the batch writer counts as decoding), and a thread
that waits (selector, socket, lock) counts as idle: in an asyncio worker that is the time
spent waiting for PostgreSQL or for the broker.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (stage, substrings of a frame "function (file:line)"); the deepest matching frame wins.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("idle: waiting (PostgreSQL, broker, timers)", (
        "select (selectors.py", "poll (selectors.py", "_poll (selectors.py", "wait (threading.py",
        "acquire (threading.py", "sleep (", "recv_into (", "_wait_for_tstate_lock")),
    ("decode (Avro, events.codec)", ("(events/codec.py", "(fastavro/")),
    ("fold (processors.rules.fold)", ("(processors/rules/fold.py",
                                      "(processors/rules/timeutil.py",
                                      "(processors/rules/requests.py", "(events/model.py")),
    ("AES-GCM / Ed25519 (cryptography)", ("(cryptography/", "(events/crypto.py")),
    ("archive COPY (writer._archive)", ("_archive (projections/writer.py",)),
    ("integrity chain + Ed25519 signing", ("(processors/rules/integrity.py",
                                           "(projections/integrity_store.py")),
    ("consent-history hook", ("(projections/consent_history.py",)),
    ("erasure hooks (record facts, enforce)", ("(projections/erasure_store.py",
                                                "(processors/rules/erasure.py",
                                                "(processors/rules/retention.py")),
    ("analytics hook", ("(projections/analytics.py",)),
    ("lookup hook (keyed digests)", ("(projections/lookup.py", "(processors/rules/lookup.py")),
    ("requests hook", ("(projections/requests.py",)),
    ("key store (unwrap keys)", ("(events/keystore.py",)),
    ("rebuild: rows and COPY of the bulk pass", ("(projections/bulk.py",)),
    ("outbox drain", ("(projections/outbox.py",)),
    ("JSON (de)serialisation (view docs)", ("(json/", "(psycopg/types/json.py",
                                                    "(projections/jsonb.py", "(orjson")),
    ("SQL: psycopg client (execute, executemany, pipeline)", ("(psycopg/",)),
    ("batch writer: Python around the SQL", ("(projections/writer.py",
                                             "(processors/service.py")),
    ("log reading (kafka-python LogReader)", ("(kafka/", "(events/log.py")),
    ("aiokafka consumer (fetch, parse records)", ("(aiokafka/",)),
    ("Faust / mode (streams, take_events, commits)", ("(faust/", "(mode/")),
    ("logging (structlog)", ("(structlog/",)),
    ("asyncio event loop", ("(asyncio/",)),
]
OTHER = "other Python"


def executable() -> str | None:
    """py-spy on PATH, else beside this Python (a venv's bin, not activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def available() -> bool:
    return executable() is not None


@dataclass
class Recorder:
    """``py-spy record`` attached to ``pid`` from start() until stop()."""

    pid: int
    output: Path
    rate: int = 100
    subprocesses: bool = False  # also the process's children (a rebuild's workers)
    process: subprocess.Popen | None = None
    started: float = 0.0
    error: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.output.with_suffix(".log")

    def start(self) -> Recorder:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [executable() or "py-spy", "record", "--pid", str(self.pid), "--format", "raw",
                 "--threads", "--idle", "--nonblocking", "--rate", str(self.rate), "--output",
                 str(self.output), *(["--subprocesses"] if self.subprocesses else [])],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started = time.monotonic()
        return self

    def stop(self) -> float:
        """Stop sampling (SIGINT makes py-spy write its file); returns seconds sampled."""
        seconds = time.monotonic() - self.started
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.output.exists():
            self.error = self.log.read_text(errors="replace")[-500:] if self.log.exists() else ""
        return seconds


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # leaf first
        for stage, needles in RULES:
            if any(n in frame for n in needles):
                return stage
    return OTHER


def summarise(path: Path, top: int = 12, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Samples per thread and stage, the busiest thread's share per stage, and top leaves.

    A sample whose leaf frame contains one of ``exclude`` is left out."""
    threads: dict[str, Counter[str]] = {}
    leaves: dict[str, Counter[str]] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        if frames and frames[0].startswith("process"):  # py-spy may prefix the process
            thread = frames[1] if len(frames) > 1 and frames[1].startswith("thread") else thread
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        if not frames or any(x in frames[-1] for x in exclude):
            continue  # no Python frame (native code between frames), or excluded
        n = int(count)
        threads.setdefault(thread, Counter())[stage_of(frames)] += n
        leaf = next((f for f in reversed(frames) if "(" in f), frames[-1] if frames else "?")
        leaves.setdefault(thread, Counter())[leaf] += n
    out: dict[str, Any] = {"threads": {}}
    ranked = sorted(threads, key=lambda t: -sum(
        v for k, v in threads[t].items() if not k.startswith("idle")))
    for rank, thread in enumerate(ranked):
        counts = threads[thread]
        total = sum(counts.values())
        busy = total - sum(v for k, v in counts.items() if k.startswith("idle"))
        out["threads"][thread] = {
            "rank_by_busy": rank, "samples": total, "busy_share": busy / total if total else 0,
            "stages": {k: v / total for k, v in counts.most_common()},
            "top_leaves": [(k, v / total) for k, v in leaves[thread].most_common(top)],
        }
    if ranked:
        main = threads[ranked[0]]
        total = sum(main.values())
        out["busiest_thread"] = ranked[0]
        out["busiest_thread_stages"] = {k: round(v / total, 4) for k, v in main.most_common()}
    return out


def format_summary(summary: dict[str, Any], title: str, limit: int = 14) -> str:
    lines = [title]
    stages = summary.get("busiest_thread_stages") or {}
    for name, share in list(stages.items())[:limit]:
        lines.append(f"  {share:6.1%}  {name}")
    others = [t for t, v in summary.get("threads", {}).items()
              if t != summary.get("busiest_thread") and v["busy_share"] > 0.02]
    for t in others:
        v = summary["threads"][t]
        busy = {k: s for k, s in v["stages"].items() if not k.startswith("idle")}
        top = ", ".join(f"{k} {s:.0%}" for k, s in list(busy.items())[:3])
        lines.append(f"  other thread busy {v['busy_share']:.0%} of its samples: {top}")
    return "\n".join(lines)

"""The baseline of the processor benchmark: a bare Faust agent that only counts ledger events.

Same Faust settings as `python -m processors` (read from `processors.app.create_app`, which
also installs `processors.tuning`), same topic object (raw key and value), same batch size and
window (``take_events(batch_size, within=batch_within)``, Faust's own batching; the worker
takes with ``noack_take`` and applies through `processors.pipeline`), the same collector settings
(`processors.heap.tune_gc`), agent concurrency 1; its own group id, so
it reads the whole log from offset 0. It writes two JSON lines to ``--out``: the first batch
(monotonic time, events so far) and the moment the count reaches ``--expect``; then it idles
until the parent stops it.

    python -m bench.faust_counter --kafka HOST:PORT --expect N --out FILE [--group ID]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

if __package__ in (None, ""):  # `python bench/faust_counter.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def worker_settings(kafka: str, batch_size: int) -> dict[str, Any]:
    """The keyword settings `processors.app.create_app` gives faust.App (its id left out)."""
    import processors.app as papp

    captured: dict[str, Any] = {}

    def capture(app_id: str, **settings: Any) -> None:
        captured.update(settings)

    config = papp.WorkerConfig(kafka=kafka, worker_id="bench-counter", embedded=True,
                               batch_size=batch_size)
    real = papp.faust
    papp.faust = SimpleNamespace(App=capture)  # type: ignore[assignment]
    try:
        papp.create_app(config)  # also applies processors.tuning, as the worker does
    finally:
        papp.faust = real
    return captured


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kafka", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--group", default=f"bench-counter-{uuid.uuid4().hex[:8]}")
    args = p.parse_args(argv)

    import faust

    from processors.app import WorkerConfig, ledger_topic
    from processors.heap import tune_gc

    defaults = WorkerConfig(kafka=args.kafka, worker_id="bench-counter", embedded=True)
    batch_size = int(os.environ.get("REGISTRE_BATCH_SIZE") or defaults.batch_size)
    datadir = tempfile.TemporaryDirectory(prefix="bench-counter-")  # Faust's own files
    app = faust.App(args.group, **{**worker_settings(args.kafka, batch_size),
                                   "datadir": datadir.name})
    ledger = ledger_topic(app)
    out = Path(args.out)
    state = {"n": 0, "first": False, "done": False}

    def note(what: str) -> None:
        with out.open("a") as f:
            f.write(json.dumps({"what": what, "t": time.monotonic(), "n": state["n"],
                                "cpu": time.process_time()}) + "\n")

    @app.agent(ledger, concurrency=1, name="count_ledger_events")
    async def count_ledger_events(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_size, within=defaults.batch_within):
            state["n"] += len(events)
            if not state["first"]:
                state["first"] = True
                note("first")
            if not state["done"] and state["n"] >= args.expect:
                state["done"] = True
                note("done")

    tune_gc()  # as the worker: the ratio compares registre's work, not collector settings
    try:
        faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    finally:
        datadir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

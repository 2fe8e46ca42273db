"""The web service: HTTP batch publishing vs the Python publisher, and question latency.

(a) ``POST /v1/events`` with batches of ``--batch`` events, one client, sequentially, to a
    real web service process (``python -m registre.web``: uvicorn, one long-lived publisher,
    request logging at info as in production);
(b) ``Publisher.publish_many`` in this process, same batch size, same kind of events (fresh
    subjects in every repetition for both, so both create their keys).
Repetitions alternate (b) and (a); medians; target (a) >= 0.5x (b).

Then a processor worker applies everything, and ``--clients`` threads (one HTTP connection
each) ask ``GET /v1/subjects/{id}/consent`` and the case-bound customer view
``GET /v1/subjects/{id}?case=`` for random subjects: p50/p99 latency under that concurrency,
beside the same consent question asked through the Python API (the compliance desk) in this
process, one at a time. Everything runs on the embedded broker and PostgreSQL in a temp dir.

    python -m bench.http [--events N] [--batch B] [--repeat R] [--clients C] [--queries Q]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/http.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    embedded_services,
    environment,
    median,
    publish_events,
    realistic_events,
    signing_key_env,
    write_results,
)
from events.crypto import new_data_key  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
AT = "2026-03-03T12:00:00Z"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_token(database_url: str) -> str:
    import psycopg

    from registre.bootstrap import system_clock
    from registre.services.tokens import create

    with psycopg.connect(database_url, autocommit=True) as conn:
        return create(conn, "bench", ["publish", "compliance"], system_clock())["token"]


def wait_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the web service exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("bench: the web service did not answer in 60 s")


def publish_http(url: str, token: str, events: list[dict[str, Any]],
                 batch: int) -> dict[str, float]:
    """Sequential POST /v1/events of ``batch`` events; wall seconds and events/s."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        client.post("/v1/events", json={"events": events[:1]})  # token checked, producer up
        t0 = time.perf_counter()
        for i in range(0, len(events), batch):
            answer = client.post("/v1/events", json={"events": events[i:i + batch]})
            if answer.status_code != 200 or answer.json()["rejected"]:
                raise SystemExit(f"bench: HTTP publish failed: {answer.text[:300]}")
        wall = time.perf_counter() - t0
    return {"seconds": wall, "events_per_s": (len(events) - 1) / wall}


def compare_publishing(services: Any, master: bytes, url: str, token: str, n: int,
                       batch: int, repeat: int) -> dict[str, Any]:
    python_runs, http_runs = [], []
    for r in range(repeat):
        python_runs.append(publish_events(services.bootstrap, services.database_url, master,
                                          realistic_events(n, f"py{r}", seed=r), batch))
        http_runs.append(publish_http(url, token, realistic_events(n + 1, f"web{r}", seed=r),
                                      batch))
    py = median([x["events_per_s"] for x in python_runs])
    web = median([x["events_per_s"] for x in http_runs])
    return {"python_events_per_s": py, "http_events_per_s": web, "ratio": web / py,
            "meets_target": web / py >= 0.5, "python_runs": python_runs,
            "http_runs": http_runs}


def percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    pick = lambda q: ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]  # noqa: E731
    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ms[-1],
            "n": len(ms)}


def hammer(url: str, token: str, paths: list[str], clients: int) -> dict[str, Any]:
    """``clients`` threads share ``paths`` (one connection each); latency of each request."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    chunks = [paths[i::clients] for i in range(clients)]

    def client(mine: list[str]) -> None:
        mine_ms, bad = [], []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as http:
            for path in mine:
                t0 = time.perf_counter()
                answer = http.get(path)
                mine_ms.append((time.perf_counter() - t0) * 1000)
                if answer.status_code != 200:
                    bad.append(answer.status_code)
        with lock:
            latencies.extend(mine_ms)
            errors.extend(bad)

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {**percentiles(latencies), "requests_per_s": len(latencies) / wall,
            "errors": len(errors), "clients": clients}


def in_process_consent(env: dict[str, str], subjects: list[str]) -> dict[str, float]:
    """The same consent question through the compliance desk, in this process, in turn."""
    from registre.bootstrap import Registre
    from registre.services.audit import parse_at
    from registre.services.compliance import Compliance
    from registre.settings import Settings

    desk = Compliance(Registre(Settings.from_env(env)), "bench")
    at = parse_at(AT)
    ms = []
    for subject in subjects:
        t0 = time.perf_counter()
        desk.consent(subject, "marketing", at)
        ms.append((time.perf_counter() - t0) * 1000)
    return percentiles(ms)


def question_latency(services: Any, env: dict[str, str], url: str, token: str,
                     clients: int, queries: int, home: Path) -> dict[str, Any]:
    from projections.positions import backlog

    worker = start("registre.worker", {**env, "REGISTRE_WORKER_ID": "bench-w",
                                       "REGISTRE_EMBEDDED": "1"}, home / "worker.log")
    try:
        deadline = time.monotonic() + 900
        while backlog(services.bootstrap, services.database_url):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("bench: the worker did not apply the events")
            time.sleep(0.5)
    finally:
        stop(worker)
    import psycopg

    with psycopg.connect(services.database_url) as conn:
        known = [r[0] for r in conn.execute(
            "SELECT subject_id FROM projections.customer_view ORDER BY subject_id")]
    rng = random.Random(11)
    picked = [rng.choice(known) for _ in range(queries)]
    consent = [f"/v1/subjects/{s}/consent?purpose=marketing&at={AT}" for s in picked]
    views = [f"/v1/subjects/{s}?case=BENCH-1" for s in picked]
    return {"subjects": len(known), "consent": hammer(url, token, consent, clients),
            "view": hammer(url, token, views, clients),
            "consent_python_api": in_process_consent(env, picked[: max(200, queries // 4)])}


def run(events: int = 20_000, batch: int = 1000, repeat: int = 3, clients: int = 8,
        queries: int = 1600, log: Any = print) -> dict[str, Any]:
    master = new_data_key()
    with embedded_services() as services:
        home = services.home / "web"
        home.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}
        env.update(REGISTRE_KAFKA=services.bootstrap, REGISTRE_DATABASE_URL=services.database_url,
                   REGISTRE_MASTER_KEY=base64.b64encode(master).decode(),
                   REGISTRE_HOME=str(home), REGISTRE_HTTP=f"127.0.0.1:{port}",
                   REGISTRE_LOG_LEVEL="info", **signing_key_env(master))
        token = make_token(services.database_url)
        web = start("registre.web", env, home / "web.log")
        try:
            wait_up(url, web, home / "web.log")
            log(f"   publishing: {repeat} x {events:,} events in batches of {batch}")
            publishing = compare_publishing(services, master, url, token, events, batch, repeat)
            log(f"   questions: {clients} clients, {queries} requests per question")
            questions = question_latency(services, env, url, token, clients, queries, home)
        finally:
            stop(web)
    return {"config": {"events": events, "batch": batch, "repeat": repeat, "clients": clients,
                       "queries": queries}, "environment": environment(),
            "publishing": publishing, "questions": questions}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--queries", type=int, default=1600)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    from registre.logs import configure

    configure("warning")
    result = run(args.events, args.batch, args.repeat, args.clients, args.queries)
    path = write_results(Path(args.output).name if args.output else "http.json", result)
    pub, q = result["publishing"], result["questions"]
    print(f"HTTP batch publishing {pub['http_events_per_s']:,.0f} ev/s vs Python publisher "
          f"{pub['python_events_per_s']:,.0f} ev/s: {pub['ratio']:.2f}x (target >= 0.5x)")
    for name in ("consent", "view"):
        r = q[name]
        print(f"{name} over HTTP, {r['clients']} clients: p50 {r['p50']:.1f} ms, p99 "
              f"{r['p99']:.1f} ms, {r['requests_per_s']:,.0f} req/s, errors {r['errors']}")
    api = q["consent_python_api"]
    print(f"consent via the Python API, one at a time: p50 {api['p50']:.2f} ms, p99 "
          f"{api['p99']:.2f} ms; wrote {path}")
    return 0 if pub["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())

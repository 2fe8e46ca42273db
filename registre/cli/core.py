"""Handlers of the core commands: run, publish, info, wait, view, rebuild, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from registre import bootstrap as app
from registre.cli import command, emit
from registre.cli.errors import UserError
from registre.cli.jsonl import read_lines
from registre.settings import Settings


@command("run")
def run(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.supervisor import run_foreground

    return run_foreground(settings, workers=args.workers)


@command("publish")
def publish(args: argparse.Namespace, settings: Settings) -> int:
    if args.file == "-":
        stream = sys.stdin.buffer
    else:
        path = Path(args.file)
        if not path.is_file():
            raise UserError(f"{args.file}: no such file")
        stream = path.open("rb")
    with stream:
        lines = list(read_lines(stream))
    if not lines:
        raise UserError(f"{args.file}: no events (the file is empty)")
    rejected = [{"line": ln.number, "error": ln.error} for ln in lines if ln.error]
    good = [ln for ln in lines if not ln.error]
    published = 0
    if good:
        with app.open_publisher(settings) as publisher:
            report = publisher.publish_many(ln.value for ln in good)
        published = report.published
        rejected += [{"line": good[i].number, "error": err} for i, err in report.rejected]
    rejected.sort(key=lambda r: r["line"])
    emit({"published": published, "rejected": rejected}, as_json=True)
    if rejected:
        first = rejected[0]
        print(f"registre publish: {len(rejected)} line(s) rejected (first: line {first['line']}: "
              f"{first['error']})", file=sys.stderr)
    return 1 if rejected else 0


@command("info")
def info(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.status import describe

    emit(describe(settings), as_json=True)
    return 0


@command("wait")
def wait(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from projections.positions import backlog

    kafka, database_url = settings.endpoints()
    deadline = time.monotonic() + args.timeout
    while True:
        behind = backlog(kafka, database_url)
        if not behind:
            return 0
        if time.monotonic() > deadline:
            raise UserError(f"timed out after {args.timeout:g}s: {behind} record(s) not "
                            "applied yet (are the processors running?)")
        time.sleep(0.1)


@command("view")
def view(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    import psycopg

    from projections.queries import customer_view
    from registre.services.views import brief, render

    if args.retained:
        from registre.cli.erasure import retained_view

        answer = retained_view(args, settings)
        emit(answer, as_json=args.json)
        return 0
    _, database_url = settings.endpoints()
    with psycopg.connect(database_url) as conn:
        doc = customer_view(conn, args.subject)
    if doc is None:
        raise UserError(f"{args.subject}: no such subject in the customer view")
    with app.open_keystore(settings) as keystore:
        answer = render(doc, keystore, datetime.now(UTC))
    emit(answer if args.json else brief(answer), as_json=args.json)
    return 0


@command("rebuild")
def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.rebuild import rebuild as run_rebuild

    kafka, database_url = settings.endpoints()
    n = run_rebuild(kafka, database_url, app.master_key(settings), progress=sys.stderr.isatty())
    emit({"rebuilt": True, "records": n}, as_json=True)
    return 0


@command("demo")
def demo(args: argparse.Namespace, settings: Settings) -> int:
    from registre.demo import run_demo

    return run_demo(settings)

"""Handlers of the core commands: run, publish, info, wait, view, rebuild, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from registre import app
from registre.cli import command, emit
from registre.config import Settings
from registre.errors import UserError
from registre.jsonl import read_lines


@command("run")
def run(args: argparse.Namespace, settings: Settings) -> int:
    from registre.runner import run_foreground

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
    return 1 if rejected else 0


@command("info")
def info(args: argparse.Namespace, settings: Settings) -> int:
    from registre.status import describe

    emit(describe(settings), as_json=True)
    return 0

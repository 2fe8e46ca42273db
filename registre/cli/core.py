"""The core commands: run, publish, info, wait, view, rebuild, demo."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path
from typing import Any

from registre.errors import UserError
from registre.output import emit
from registre.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="the whole story on the embedded default, start to finish")
    d.add_argument("--serve", action="store_true",
                   help="keep everything up at the end (the compliance console) until Ctrl-C")
    d.set_defaults(func=demo)
    r = sub.add_parser("run", help="run the processors (and the embedded default) until Ctrl-C")
    r.add_argument("--workers", type=count, default=None,
                   help="processor worker processes (default: one per core, at most one per"
                        " ledger partition)")
    r.add_argument("--http", default=None, metavar="HOST:PORT",
                   help="where the web service listens (default $REGISTRE_HTTP or "
                        "127.0.0.1:8737)")
    r.add_argument("--no-http", action="store_true", help="do not serve the web service")
    r.set_defaults(func=run)
    pub = sub.add_parser("publish", help="publish JSON-lines events from FILE (- for stdin)")
    pub.add_argument("file")
    pub.set_defaults(func=publish)
    sub.add_parser("info", help="where things are (JSON)").set_defaults(func=info)
    w = sub.add_parser("wait", help="return when every processor applied everything published")
    w.add_argument("--timeout", type=float, default=60.0)
    w.set_defaults(func=wait)
    v = sub.add_parser("view", help="the current customer view of SUBJECT")
    v.add_argument("subject")
    v.add_argument("--json", action="store_true")
    v.add_argument("--retained", action="store_true",
                   help="compliance read of data retained after deletion (needs --case)")
    v.add_argument("--case", help="case reference of a compliance read")
    reader_flag(v)
    v.set_defaults(func=view)
    rb = sub.add_parser("rebuild", help="rebuild every projection from the log, while the"
                        " processors keep applying (blue/green)")
    rb.add_argument("--workers", type=count, default=None,
                    help="worker processes folding partitions (default: one per core)")
    rb.add_argument("--memory-mb", type=count, default=2048,
                    help="memory one worker may hold; a partition with more subjects is folded"
                         " in several passes (default 2048)")
    rb.set_defaults(func=rebuild)


def count(text: str) -> int:
    """A whole number of at least 1 (workers, megabytes): argparse says which option is wrong."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def reader_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reader", default=None,
                   help="who reads, for the access log (default: $REGISTRE_READER or the OS user)")


def reader(args: argparse.Namespace, settings: Settings) -> str:
    """Who reads: --reader, else REGISTRE_READER, else the OS user."""
    if getattr(args, "reader", None) and args.reader.strip():
        return args.reader.strip()
    env = settings.env.get("REGISTRE_READER")
    if env and env.strip():
        return env.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def desk(args: argparse.Namespace, settings: Settings) -> Any:
    """The compliance desk for this command's reader."""
    from registre.bootstrap import Registre
    from registre.services.compliance import Compliance

    return Compliance(Registre(settings), reader(args, settings))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from registre.settings import parse_bind
    from registre.supervisor import run_foreground

    http = None if args.no_http else (parse_bind(args.http, "--http") if args.http
                                      else settings.http)
    return run_foreground(settings, workers=args.workers, http=http)


def _lines(name: str) -> list[Any]:
    from registre.cli.jsonl import read_lines

    if name == "-":
        return list(read_lines(sys.stdin.buffer))
    path = Path(name)
    if not path.is_file():
        raise UserError(f"{name}: no such file")
    with path.open("rb") as stream:
        return list(read_lines(stream))


def publish(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre

    lines = _lines(args.file)
    if not lines:
        raise UserError(f"{args.file}: no events (the file is empty)")
    rejected = [{"line": ln.number, "error": ln.error} for ln in lines if ln.error]
    good = [ln for ln in lines if not ln.error]
    published, redacted = 0, []
    if good:
        with Registre(settings).publisher() as publisher:
            report = publisher.publish_many(ln.value for ln in good)
        published = report.published
        rejected += [{"line": good[i].number, "error": err} for i, err in report.rejected]
        redacted = [good[i].number for i in report.redacted]
    rejected.sort(key=lambda r: r["line"])
    answer: dict[str, Any] = {"published": published, "rejected": rejected}
    if redacted:  # lines about an erased subject, stored with their personal fields redacted
        answer["redacted"] = redacted
    emit(answer, as_json=True)
    if rejected:
        first = rejected[0]
        print(f"registre publish: {len(rejected)} line(s) rejected (first: line {first['line']}: "
              f"{first['error']})", file=sys.stderr)
    return 1 if rejected else 0


def info(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.status import describe

    emit(describe(settings), as_json=True)
    return 0


def wait(args: argparse.Namespace, settings: Settings) -> int:
    """Until everything published is applied; then exit 1 if a subject's erasure or sweep
    failed (it is retried, and shown by `registre info`)."""
    import psycopg

    from projections.positions import backlog
    from projections.problems import open_problems

    kafka, database_url = settings.endpoints("compliance")
    deadline = time.monotonic() + args.timeout
    while behind := backlog(kafka, database_url):
        if time.monotonic() > deadline:
            raise UserError(f"timed out after {args.timeout:g}s: {behind} record(s) not "
                            "applied yet (are the processors running?)")
        time.sleep(0.1)
    with psycopg.connect(database_url) as conn:
        problems = open_problems(conn)
    if problems:
        first = problems[0]
        raise UserError(f"everything is applied, but {len(problems)} subject(s) could not be"
                        f" processed (first: {first['subject_id']}, {first['job']} since"
                        f" {first['since']}: {first['reason']}); see `registre info`")
    return 0


def view(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.views import brief

    compliance = desk(args, settings)
    if args.retained:
        if not args.case:
            raise UserError("--retained needs --case REF: every compliance read is recorded")
        emit(compliance.retained(args.subject, args.case), as_json=args.json)
        return 0
    answer = compliance.view(args.subject)
    emit(answer if args.json else brief(answer), as_json=args.json)
    return 0


def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services.rebuild import rebuild as run_rebuild

    if args.workers is not None and args.workers < 1:
        raise UserError("--workers: at least 1")
    if args.memory_mb < 64:
        raise UserError("--memory-mb: at least 64")
    reg = Registre(settings)
    report = run_rebuild(reg.rebuild_job(args.workers, progress=sys.stderr.isatty(),
                                         memory_mb=args.memory_mb))
    emit(report.summary(), as_json=True)
    return 0


def demo(args: argparse.Namespace, settings: Settings) -> int:
    from registre.demo import run_demo

    return run_demo(settings, serve=args.serve)

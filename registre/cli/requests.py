"""Data-subject requests on the command line (the work is `registre.services.requests`):

    registre requests open SUBJECT --kind K --channel C [--identity-verified] [--received-at T]
    registre requests extend ID --months N --reason R
    registre requests complete ID --outcome O [--reason R]
    registre requests list [--overdue | --status S] [--subject SUBJECT]
    registre requests show ID

Each prints text by default and one JSON document with ``--json``. A bad value, an unknown
request, or an extension or completion the rules refuse is a one-line error (exit 1).
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from importlib import resources
from typing import Any

from registre.cli.core import desk
from registre.errors import UserError
from registre.output import emit
from registre.settings import Settings


@cache
def symbols(name: str) -> tuple[str, ...]:
    """The symbols of the enum ``schemas/types/<name>.avsc`` (read as JSON: no Avro library)."""
    text = resources.files("schemas").joinpath("types", f"{name}.avsc").read_text("utf-8")
    return tuple(json.loads(text)["symbols"])


def _one_of(value: str, name: str, option: str) -> str:
    if value not in symbols(name):
        raise UserError(f"{option} {value!r}: expected one of {', '.join(symbols(name))}")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `registre requests ...`."""
    r = sub.add_parser("requests", help="data-subject requests (GDPR art. 12(3)) and deadlines")
    actions = r.add_subparsers(dest="requests_command", required=True, metavar="ACTION")
    o = actions.add_parser("open", help="record a request received from SUBJECT")
    o.add_argument("subject")
    o.add_argument("--kind", required=True, help=", ".join(symbols("RequestKind")))
    o.add_argument("--channel", required=True, help=", ".join(symbols("RequestChannel")))
    o.add_argument("--identity-verified", action="store_true",
                   help="the person's identity was verified")
    o.add_argument("--received-at", default=None,
                   help="RFC 3339 instant of receipt, if earlier than now (the deadline runs"
                        " from it)")
    o.set_defaults(func=open_request)
    e = actions.add_parser("extend", help="extend a request's deadline, once, within its first"
                                          " month")
    e.add_argument("request_id", metavar="ID")
    e.add_argument("--months", required=True, help="further months (1 or 2 by default policy)")
    e.add_argument("--reason", required=True, help="why, as told to the person")
    e.set_defaults(func=extend_request)
    c = actions.add_parser("complete", help="record the answer to a request")
    c.add_argument("request_id", metavar="ID")
    c.add_argument("--outcome", required=True, help=", ".join(symbols("RequestOutcome")))
    c.add_argument("--reason", default=None, help="why (a refusal, a partial answer)")
    c.set_defaults(func=complete_request)
    ls = actions.add_parser("list", help="requests and their deadlines: open, overdue, done")
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--overdue", action="store_true", help="only the overdue ones")
    which.add_argument("--status", default=None, help="open, overdue or done (default: all)")
    ls.add_argument("--subject", default=None, help="only this subject's requests")
    ls.set_defaults(func=list_requests)
    sh = actions.add_parser("show", help="one request, with its matching erasure or export")
    sh.add_argument("request_id", metavar="ID")
    sh.set_defaults(func=show_request)
    for p in (o, e, c, ls, sh):
        p.add_argument("--json", action="store_true", help="one JSON document instead of text")


def open_request(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.audit import parse_at

    kind = _one_of(args.kind, "RequestKind", "--kind")
    channel = _one_of(args.channel, "RequestChannel", "--channel")
    at = parse_at(args.received_at, "--received-at") if args.received_at else None
    emit(desk(args, settings).open_request(args.subject, kind, channel, args.identity_verified,
                                           at), args.json)
    return 0


def extend_request(args: argparse.Namespace, settings: Settings) -> int:
    try:
        months = int(args.months)
    except ValueError:
        raise UserError(f"--months {args.months!r}: expected a whole number") from None
    if not args.reason.strip():
        raise UserError("--reason: give the reason told to the person")
    emit(desk(args, settings).extend_request(args.request_id, months, args.reason), args.json)
    return 0


def complete_request(args: argparse.Namespace, settings: Settings) -> int:
    outcome = _one_of(args.outcome, "RequestOutcome", "--outcome")
    reason = args.reason if args.reason and args.reason.strip() else None
    emit(desk(args, settings).complete_request(args.request_id, outcome, reason), args.json)
    return 0


def list_requests(args: argparse.Namespace, settings: Settings) -> int:
    status = "overdue" if args.overdue else args.status
    emit(desk(args, settings).requests(status, args.subject), args.json, text=listing_text)
    return 0


def show_request(args: argparse.Namespace, settings: Settings) -> int:
    emit(desk(args, settings).request(args.request_id), args.json)
    return 0


def _line(r: dict[str, Any]) -> str:
    line = (f"{r['status']:<8} {r['request_id']}  {r['subject_id']}  {r['kind']} ({r['channel']})"
            f"  received {r['received_at']}  due {r['deadline']}")
    if r["extension"]:
        line += f" (extended {r['extension']['months']} month(s))"
    if r["status"] == "done":
        line += f"  completed {r['completed_at']} {r['outcome']}" + (" LATE" if r["late"] else "")
    if r["matching"]:
        line += f"  matched: {r['matching']['type']} at {r['matching']['at']}"
    if r["problem"]:
        line += f"  PROBLEM: {r['problem']}"
    return line


def listing_text(doc: dict[str, Any]) -> str:
    """One line per request under a line of totals."""
    c = doc["counts"]
    head = (f"{c['open']} open, {c['overdue']} overdue, {c['done']} done at {doc['now']}"
            + (f" for {doc['subject_id']}" if doc["subject_id"] else "")
            + (f"; showing {doc['status']}" if doc["status"] != "all" else ""))
    lines = [_line(r) for r in doc["requests"]] or ["(none)"]
    return "\n".join([head, *lines])

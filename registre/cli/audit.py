"""The compliance questions on the command line (the work is `registre.services.compliance`):

    registre audit consent SUBJECT --purpose P --at T
    registre audit disclosures SUBJECT
    registre audit erasure SUBJECT
    registre audit as-of SUBJECT --at T --case REF
    registre audit schedule [--days N] [--now T]
    registre export SUBJECT [--case REF] [--output FILE]
    registre verify

Each prints text by default and one JSON document with ``--json``; a bad instant, purpose or
subject id, an unknown subject or a missing case reference is a one-line error (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from registre.cli.core import desk, reader_flag
from registre.errors import UserError
from registre.output import emit
from registre.settings import Settings

DEFAULT_DAYS = 30


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the compliance sub-commands."""
    audit = sub.add_parser("audit", help="answer a compliance question about a subject")
    questions = audit.add_subparsers(dest="audit_command", required=True, metavar="QUESTION")

    c = questions.add_parser("consent", help="consent of SUBJECT for a purpose at an instant")
    c.add_argument("subject")
    c.add_argument("--purpose", required=True, help="e.g. marketing, personalised_ads")
    c.add_argument("--at", required=True, help="RFC 3339 instant, e.g. 2026-03-03T15:00:00+01:00")
    c.set_defaults(func=audit_consent)

    d = questions.add_parser("disclosures", help="who received SUBJECT's data; unauthorised "
                                                 "disclosures flagged")
    d.add_argument("subject")
    d.set_defaults(func=audit_disclosures)

    e = questions.add_parser("erasure", help="what was destroyed, what is kept, why, holds")
    e.add_argument("subject")
    e.set_defaults(func=audit_erasure)

    a = questions.add_parser("as-of", help="SUBJECT's customer view as it stood at an instant "
                                           "(recorded in the access log)")
    a.add_argument("subject")
    a.add_argument("--at", required=True, help="RFC 3339 instant")
    a.add_argument("--case", default=None, help="case reference (required)")
    reader_flag(a)
    a.set_defaults(func=audit_as_of)

    s = questions.add_parser("schedule", help="destructions due in the next N days, active holds")
    s.add_argument("--days", type=int, default=DEFAULT_DAYS,
                   help=f"look-ahead in days (default {DEFAULT_DAYS})")
    s.add_argument("--now", default=None, help="RFC 3339 instant to count from (default: now)")
    s.set_defaults(func=audit_schedule)
    for p in (c, d, e, a, s):
        _json_flag(p)

    x = sub.add_parser("export", help="everything about SUBJECT in one document (GDPR art. 15, 20)")
    x.add_argument("subject")
    x.add_argument("--case", default=None, help="case reference of the request (access log)")
    x.add_argument("--output", "-o", default=None,
                   help="write the JSON document to this file (mode 0600) and print a summary")
    reader_flag(x)
    _json_flag(x)
    x.set_defaults(func=export)

    v = sub.add_parser("verify", help="check the integrity of the whole log")
    v.add_argument("--public-key", metavar="FILE", default=None,
                   help="verify with this public key (from `registre keys public-key`): no"
                        " master key or signing key needed")
    _json_flag(v)
    v.set_defaults(func=verify)


@contextmanager
def _asking(what: str) -> Iterator[None]:
    """A question that cannot be asked becomes a one-line error naming the question."""
    from registre.cli.errors import describe

    try:
        yield
    except (LookupError, ValueError) as exc:
        if describe(exc) is None:
            raise
        raise UserError(f"{what}: {exc}") from None


def _instant(text: str, what: str = "--at") -> object:
    from registre.services.audit import parse_at

    return parse_at(text, what)


def audit_consent(args: argparse.Namespace, settings: Settings) -> int:
    with _asking("consent"):
        answer = desk(args, settings).consent(args.subject, args.purpose, _instant(args.at))
    emit(answer, args.json)
    return 0


def audit_disclosures(args: argparse.Namespace, settings: Settings) -> int:
    with _asking("disclosures"):
        answer = desk(args, settings).disclosures(args.subject)
    emit(answer, args.json)
    return 0


def audit_erasure(args: argparse.Namespace, settings: Settings) -> int:
    with _asking("erasure"):
        answer = desk(args, settings).erasure(args.subject)
    emit(answer, args.json)
    return 0


def audit_as_of(args: argparse.Namespace, settings: Settings) -> int:
    with _asking("as-of"):
        compliance = desk(args, settings)
        at = _instant(args.at)
        answer = compliance.as_of(args.subject, at, args.case)
    emit(answer, args.json)
    return 0


def audit_schedule(args: argparse.Namespace, settings: Settings) -> int:
    with _asking("schedule"):
        now = _instant(args.now, "--now") if args.now else None
        answer = desk(args, settings).schedule(args.days, now)
    emit(answer, args.json)
    return 0


def export(args: argparse.Namespace, settings: Settings) -> int:
    from registre.files import refuse_link, write_private
    from registre.services.export import export_summary

    if args.output:  # before anything is read or recorded
        refuse_link(Path(args.output))
    with _asking("export"):
        doc = desk(args, settings).export(args.subject, args.case)
    if not args.output:
        emit(doc, args.json)
        return 0
    path = Path(args.output)
    write_private(path, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    emit({"written": str(path), **export_summary(doc)}, args.json)
    return 0


def verify(args: argparse.Namespace, settings: Settings) -> int:
    with _asking("verify"):
        public = None
        if args.public_key:
            from events.crypto import read_public_key

            path = Path(args.public_key)
            if not path.is_file():
                raise UserError(f"{args.public_key}: no such file")
            public = read_public_key(path.read_text(), args.public_key)
        answer = desk(args, settings).verify(public)
    emit(answer, args.json)
    if not answer["ok"]:
        bad = answer["first_bad"]
        where = (f"partition {bad['partition']} offset {bad['offset']}" if bad
                 else "unknown position")
        print(f"registre verify: the log fails its integrity check at {where}:"
              f" {answer['reason']}", file=sys.stderr)
        return 1
    return 0

"""Parsers and handlers of the compliance commands (audit, export, retention, keys, verify).

    registre audit consent SUBJECT --purpose P --at T
    registre audit disclosures SUBJECT
    registre audit erasure SUBJECT
    registre audit as-of SUBJECT --at T --case REF
    registre audit schedule [--days N]
    registre export SUBJECT [--case REF] [--output FILE]
    registre verify

Each prints text by default and one JSON document with ``--json``; a bad instant, purpose or
subject id, an unknown subject or a missing case reference is a one-line error (exit 1).
The work is done by `registre.services.audit` (and `services.verify`); nothing is computed here.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registre.cli import command, emit
from registre.cli.errors import UserError
from registre.settings import Settings

AuditHandler = Callable[[argparse.Namespace, Settings], int]
_AUDIT: dict[str, AuditHandler] = {}
DEFAULT_DAYS = 30


def _audit(name: str) -> Callable[[AuditHandler], AuditHandler]:
    def register(fn: AuditHandler) -> AuditHandler:
        _AUDIT[name] = fn
        return fn

    return register


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")


def _reader_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reader", default=None,
                   help="who reads, for the access log (default: $REGISTRE_READER or the OS user)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the compliance sub-commands."""
    audit = sub.add_parser("audit", help="answer a compliance question about a subject")
    questions = audit.add_subparsers(dest="audit_command", required=True, metavar="QUESTION")

    c = questions.add_parser("consent", help="consent of SUBJECT for a purpose at an instant")
    c.add_argument("subject")
    c.add_argument("--purpose", required=True, help="e.g. marketing, personalised_ads")
    c.add_argument("--at", required=True, help="RFC 3339 instant, e.g. 2026-03-03T15:00:00+01:00")
    _json_flag(c)

    d = questions.add_parser("disclosures", help="who received SUBJECT's data; unauthorised "
                                                 "disclosures flagged")
    d.add_argument("subject")
    _json_flag(d)

    e = questions.add_parser("erasure", help="what was destroyed, what is kept, why, holds")
    e.add_argument("subject")
    _json_flag(e)

    a = questions.add_parser("as-of", help="SUBJECT's customer view as it stood at an instant "
                                           "(recorded in the access log)")
    a.add_argument("subject")
    a.add_argument("--at", required=True, help="RFC 3339 instant")
    a.add_argument("--case", default=None, help="case reference (required)")
    _reader_flag(a)
    _json_flag(a)

    s = questions.add_parser("schedule", help="destructions due in the next N days, active holds")
    s.add_argument("--days", type=int, default=DEFAULT_DAYS,
                   help=f"look-ahead in days (default {DEFAULT_DAYS})")
    s.add_argument("--now", default=None, help="RFC 3339 instant to count from (default: now)")
    _json_flag(s)

    x = sub.add_parser("export", help="everything about SUBJECT in one document (GDPR art. 15, 20)")
    x.add_argument("subject")
    x.add_argument("--case", default=None, help="case reference of the request (access log)")
    x.add_argument("--output", "-o", default=None,
                   help="write the JSON document to this file (mode 0600) and print a summary")
    _reader_flag(x)
    _json_flag(x)

    v = sub.add_parser("verify", help="check the integrity of the whole log")
    _json_flag(v)


@contextmanager
def _questions(what: str) -> Iterator[None]:
    """A question that cannot be asked becomes a one-line error naming the sub-command."""
    from projections.access_log import MissingCaseReference
    from registre.services.audit import BadQuestion, UnknownSubject

    try:
        yield
    except (BadQuestion, UnknownSubject, MissingCaseReference) as exc:
        raise UserError(f"{what}: {exc}") from None
    except ImportError as exc:
        raise UserError(f"{what}: not available in this build ({exc.name})") from None


def _now() -> datetime:
    return datetime.now(UTC)


def _reader(args: argparse.Namespace, settings: Settings) -> str:
    if args.reader and args.reader.strip():
        return args.reader.strip()
    env = settings.env.get("REGISTRE_READER") or os.environ.get("REGISTRE_READER")
    if env and env.strip():
        return env.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _consent_months(settings: Settings) -> int:
    from processors.rules.policy import policy_from_env

    try:
        return policy_from_env(settings.env).consent_validity_months
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _connect(database_url: str) -> Any:
    import psycopg

    return psycopg.connect(database_url, autocommit=True)


@command("audit")
def audit(args: argparse.Namespace, settings: Settings) -> int:
    return _AUDIT[args.audit_command](args, settings)


@_audit("consent")
def audit_consent(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services import audit as svc

    with _questions("consent"):
        svc.check_subject(args.subject)
        svc.check_purpose(args.purpose)
        at = svc.parse_at(args.at)
        months = _consent_months(settings)
        _, database_url = settings.endpoints()
        with _connect(database_url) as conn:
            answer = svc.consent(conn, args.subject, args.purpose, at, months)
    emit(answer, args.json)
    return 0


@_audit("disclosures")
def audit_disclosures(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services import audit as svc

    with _questions("disclosures"):
        svc.check_subject(args.subject)
        kafka, _ = settings.endpoints()
        answer = svc.disclosures(kafka, args.subject)
    emit(answer, args.json)
    return 0


@_audit("erasure")
def audit_erasure(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services import audit as svc

    with _questions("erasure"):
        svc.check_subject(args.subject)
        _, database_url = settings.endpoints()
        with _connect(database_url) as conn:
            answer = svc.erasure(conn, args.subject)
    emit(answer, args.json)
    return 0


@_audit("as-of")
def audit_as_of(args: argparse.Namespace, settings: Settings) -> int:
    from projections.access_log import MissingCaseReference
    from registre import bootstrap as app
    from registre.services import audit as svc

    with _questions("as-of"):
        svc.check_subject(args.subject)
        at = svc.parse_at(args.at)
        if not args.case or not args.case.strip():
            raise MissingCaseReference("a case reference is required for this read (--case)")
        kafka, database_url = settings.endpoints()
        with _connect(database_url) as conn, app.open_keystore(settings) as keystore:
            answer = svc.as_of(kafka, conn, keystore, args.subject, at, args.case,
                               _reader(args, settings), _now())
    emit(answer, args.json)
    return 0


@_audit("schedule")
def audit_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services import audit as svc

    with _questions("schedule"):
        if args.days < 0:
            raise svc.BadQuestion(f"--days must be 0 or more, got {args.days}")
        now = svc.parse_at(args.now, "--now") if args.now else _now()
        _, database_url = settings.endpoints()
        with _connect(database_url) as conn:
            answer = svc.schedule(conn, now, args.days)
    emit(answer, args.json)
    return 0


@command("export")
def export(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from registre import bootstrap as app
    from registre.services import audit as svc
    from registre.services import export as export_svc

    with _questions("export"):
        svc.check_subject(args.subject)
        months = _consent_months(settings)
        kafka, database_url = settings.endpoints()
        with _connect(database_url) as conn, app.open_keystore(settings) as keystore:
            doc = export_svc.export(kafka, conn, keystore, args.subject, _now(),
                             _reader(args, settings), args.case, months)
    if args.output:
        path = Path(args.output)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, ensure_ascii=False, indent=2)
            out.write("\n")
        emit({"written": str(path), **export_svc.export_summary(doc)}, args.json)
    else:
        emit(doc, args.json)
    return 0


@command("verify")
def verify(args: argparse.Namespace, settings: Settings) -> int:
    from registre import bootstrap as app

    with _questions("verify"):
        from registre.services.verify import verify as run_verify

        kafka, database_url = settings.endpoints()
        result = run_verify(kafka, database_url, app.master_key(settings))
    first_bad = (None if result.first_bad is None else
                 {"partition": result.first_bad[0], "offset": result.first_bad[1]})
    answer = {"ok": result.ok, "first_bad": first_bad, "reason": result.reason,
              "records_checked": result.records_checked}
    for extra in ("checkpoints_checked", "unchecked_tail", "partitions"):
        if hasattr(result, extra):
            answer[extra] = getattr(result, extra)
    emit(answer, args.json)
    if not result.ok:
        where = (f"partition {first_bad['partition']} offset {first_bad['offset']}"
                 if first_bad else "unknown position")
        print(f"registre verify: the log fails its integrity check at {where}: {result.reason}",
              file=sys.stderr)
        return 1
    return 0

"""Handlers of the erasure and retention commands: retention sweep, hold, keys, and the
compliance read of retained data (`view --retained`)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from events.catalogue import CATEGORIES
from events.validation import InvalidEvent, parse_instant
from processors.rules.policy import policy_from_env
from registre import bootstrap as app
from registre.cli import command, emit
from registre.cli.errors import UserError
from registre.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("retention", help="retention: sweep what has fallen due")
    rs = r.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    sw = rs.add_parser("sweep", help="destroy what has fallen due as of --now (default: now)")
    sw.add_argument("--now", help="RFC 3339 instant, e.g. 2031-03-04T00:00:00Z")
    sw.add_argument("--json", action="store_true")

    h = sub.add_parser("hold", help="place or release a legal hold on a subject")
    hs = h.add_subparsers(dest="hold_command", required=True, metavar="ACTION")
    place = hs.add_parser("place", help="publish LegalHoldPlaced")
    place.add_argument("subject")
    place.add_argument("--case", required=True, help="case reference")
    place.add_argument("--reason", required=True,
                       choices=["dispute", "tax_audit", "regulator", "court_order"])
    place.add_argument("--categories", nargs="*", choices=CATEGORIES,
                       help="categories held (default: all)")
    release = hs.add_parser("release", help="publish LegalHoldReleased")
    release.add_argument("subject")
    release.add_argument("--case", required=True)
    for p in (place, release):
        p.add_argument("--json", action="store_true")

    k = sub.add_parser("keys", help="key-store backup and restore")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    for name, text in (("backup", "write every wrapped key to FILE"),
                       ("restore", "load FILE, then destroy again what was destroyed")):
        action = ks.add_parser(name, help=text)
        action.add_argument("file")
        action.add_argument("--json", action="store_true")


def _instant(value: str | None, name: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_instant(value, name)
    except InvalidEvent as exc:
        raise UserError(str(exc)) from None


@command("retention")
def retention(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.erasure import sweep_now

    now = _instant(args.now, "--now")
    kafka, database_url = settings.endpoints()
    answer = sweep_now(kafka, database_url, policy_from_env(settings.env), now)
    emit(answer, args.json)
    return 0


@command("hold")
def hold(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.erasure import hold_event

    now = datetime.now(UTC)
    if args.hold_command == "place":
        event = hold_event(args.subject, args.case, now, args.reason, args.categories)
    else:
        event = hold_event(args.subject, args.case, now)
    with app.open_publisher(settings) as publisher:
        published = publisher.publish(event)
    emit({"published": published.type, "event_id": published.event_id,
          "subject_id": args.subject, "case_ref": args.case}, args.json)
    return 0


@command("keys")
def keys(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.erasure import backup_keys, restore_keys

    path = Path(args.file)
    with app.open_keystore(settings) as keystore:
        if args.keys_command == "backup":
            emit({"backed_up": backup_keys(keystore, path), "file": str(path)}, args.json)
        else:
            if not path.is_file():
                raise UserError(f"{args.file}: no such file")
            emit(restore_keys(keystore, path), args.json)
    return 0


def retained_view(args: argparse.Namespace, settings: Settings) -> dict:
    """`registre view SUBJECT --retained --case REF`: the recorded compliance read."""
    from registre.services.erasure import read_retained

    if not args.case:
        raise UserError("--retained needs --case REF: every compliance read is recorded")
    _, database_url = settings.endpoints()
    with psycopg.connect(database_url, autocommit=True) as conn, \
            app.open_keystore(settings) as keystore:
        return read_retained(conn, keystore, args.subject, args.reader, args.case,
                             datetime.now(UTC))

"""The erasure and retention commands: retention sweep, legal holds, key-store backup."""

from __future__ import annotations

import argparse
from pathlib import Path

from registre.cli.core import desk
from registre.errors import UserError
from registre.output import emit
from registre.settings import Settings

CATEGORIES = ("identity", "contact", "connection", "location")  # checked again by validation
HOLD_REASONS = ("dispute", "tax_audit", "regulator", "court_order")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("retention", help="retention: sweep what has fallen due")
    rs = r.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    sw = rs.add_parser("sweep", help="destroy what has fallen due as of --now (default: now)")
    sw.add_argument("--now", help="RFC 3339 instant, e.g. 2031-03-04T00:00:00Z")
    sw.add_argument("--allow-future", action="store_true",
                    help="accept a --now later than the current time (it destroys data early:"
                         " drills and tests only)")
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=sweep)

    h = sub.add_parser("hold", help="place or release a legal hold on a subject")
    hs = h.add_subparsers(dest="hold_command", required=True, metavar="ACTION")
    place = hs.add_parser("place", help="publish LegalHoldPlaced")
    place.add_argument("subject")
    place.add_argument("--case", required=True, help="case reference")
    place.add_argument("--reason", required=True, choices=HOLD_REASONS)
    place.add_argument("--categories", nargs="*", choices=CATEGORIES,
                       help="categories held (default: all)")
    place.set_defaults(func=hold_place)
    release = hs.add_parser("release", help="publish LegalHoldReleased")
    release.add_argument("subject")
    release.add_argument("--case", required=True)
    release.set_defaults(func=hold_release)
    for p in (place, release):
        p.add_argument("--json", action="store_true")

    k = sub.add_parser("keys", help="key-store backup and restore; the verification key")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    pk = ks.add_parser("public-key", help="print (or --output) the public key `registre verify"
                                          " --public-key` checks the log with")
    pk.add_argument("--output", "-o", default=None, help="write it to this file")
    pk.set_defaults(func=keys_public)
    for name, text, func in (("backup", "write every wrapped key to FILE", keys_backup),
                             ("restore", "load FILE, then destroy again what was destroyed",
                              keys_restore)):
        action = ks.add_parser(name, help=text)
        action.add_argument("file")
        action.add_argument("--json", action="store_true")
        action.set_defaults(func=func)


def sweep(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.audit import BadQuestion, parse_at

    try:
        now = parse_at(args.now, "--now") if args.now else None
        answer = desk(args, settings).sweep(now, args.allow_future)
    except BadQuestion as exc:
        raise UserError(str(exc)) from None
    emit(answer, args.json)
    return 0


def hold_place(args: argparse.Namespace, settings: Settings) -> int:
    emit(desk(args, settings).place_hold(args.subject, args.case, args.reason, args.categories),
         args.json)
    return 0


def hold_release(args: argparse.Namespace, settings: Settings) -> int:
    emit(desk(args, settings).release_hold(args.subject, args.case), args.json)
    return 0


def keys_public(args: argparse.Namespace, settings: Settings) -> int:
    """The verification key of the ledger's signatures, for auditors (not a secret)."""
    from events.crypto import public_key_pem
    from registre.bootstrap import Registre
    from registre.files import write_private

    pem = public_key_pem(Registre(settings).signing_key)
    if args.output:
        write_private(Path(args.output), pem, mode=0o644)
    else:
        print(pem, end="")
    return 0


def keys_backup(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services.erasure import backup_keys

    path = Path(args.file)
    with Registre(settings).keystore() as keystore:
        emit({"backed_up": backup_keys(keystore, path), "file": str(path)}, args.json)
    return 0


def keys_restore(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services.erasure import restore_keys

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{args.file}: no such file")
    with Registre(settings).keystore(role="processor") as keystore:  # restores, destroys again
        emit(restore_keys(keystore, path), args.json)
    return 0

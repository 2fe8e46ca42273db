"""Console logins (http.md): who may log in to the compliance console, with which role.

    registre staff add NAME --role compliance|admin [--password-stdin]
    registre staff list [--json]
    registre staff remove NAME [--json]

Run as the admin login (`registre_admin`). `add` prompts for the password twice (getpass,
nothing echoed) or, with ``--password-stdin``, reads it from the first line of stdin (for
scripts); it is stored only as an argon2id hash. `remove` ends the person's sessions at once.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from registre.errors import UserError
from registre.output import emit
from registre.settings import Settings

ROLES = ("compliance", "admin")  # checked again by registre.services.staff


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("staff", help="console logins of compliance staff")
    actions = s.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a person who logs in to the console")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES,
                     help="compliance (the console) or admin (tokens and people)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin instead of a prompt")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=staff_add)
    listing = actions.add_parser("list", help="everyone, live or removed (no password hash)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=staff_list)
    remove = actions.add_parser("remove", help="remove a person; their sessions end at once")
    remove.add_argument("name")
    remove.add_argument("--json", action="store_true")
    remove.set_defaults(func=staff_remove)


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a prompt."""
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise UserError("no terminal to prompt for the password: give --password-stdin")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def staff_add(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services import staff

    password = read_password(args.password_stdin)
    registre = Registre(settings)
    with registre.connect("admin") as conn:
        emit(staff.add(conn, args.name, args.role, password, registre.clock()), args.json)
    return 0


def staff_list(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services import staff

    with Registre(settings).connect("admin") as conn:
        emit(staff.listing(conn), args.json)
    return 0


def staff_remove(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services import staff

    registre = Registre(settings)
    with registre.connect("admin") as conn:
        emit(staff.remove(conn, args.name, registre.clock()), args.json)
    return 0

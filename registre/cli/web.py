"""The web service's commands: serve, tokens, lookup.

    registre serve [--http HOST:PORT]
    registre tokens create NAME --scope publish|compliance|admin [--scope ...]
    registre tokens list [--json]
    registre tokens revoke NAME
    registre lookup --email E | --phone P [--json]

`tokens create` prints ``{"name", "token", "scopes"}``: the only time the token is shown (it
is stored as an argon2 hash). `lookup` is a compliance question: it answers from the keyed
lookup index, the same function as ``GET /v1/lookup``.
"""

from __future__ import annotations

import argparse

from registre.cli.core import desk
from registre.output import emit
from registre.settings import Settings

SCOPES = ("publish", "compliance", "admin")  # checked again by registre.services.tokens


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="run only the web service (HTTP API) in the foreground")
    s.add_argument("--http", default=None, metavar="HOST:PORT",
                   help="where to listen (default $REGISTRE_HTTP or 127.0.0.1:8737)")
    s.set_defaults(func=serve)

    t = sub.add_parser("tokens", help="bearer tokens of the web service")
    ts = t.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = ts.add_parser("create", help="create a token (printed once)")
    create.add_argument("name")
    create.add_argument("--scope", action="append", required=True, choices=SCOPES,
                        help="publish, compliance or admin (repeat for several)")
    create.set_defaults(func=tokens_create)
    listing = ts.add_parser("list", help="every token (no secret)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=tokens_list)
    revoke = ts.add_parser("revoke", help="revoke the live token of that name")
    revoke.add_argument("name")
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(func=tokens_revoke)

    lk = sub.add_parser("lookup", help="subject ids holding an email or a phone (keyed index)")
    which = lk.add_mutually_exclusive_group(required=True)
    which.add_argument("--email")
    which.add_argument("--phone")
    lk.add_argument("--json", action="store_true")
    lk.set_defaults(func=lookup)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from registre.logs import configure
    from registre.settings import parse_bind
    from registre.web.server import serve as run_server

    configure(settings.env.get("REGISTRE_LOG_LEVEL", "info"))  # one line per request
    bind = parse_bind(args.http, "--http") if args.http else None
    return run_server(settings, bind)


def tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services import tokens

    registre = Registre(settings)
    with registre.connect("admin") as conn:
        emit(tokens.create(conn, args.name, args.scope, registre.clock()), as_json=True)
    return 0


def tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services import tokens

    with Registre(settings).connect("admin") as conn:
        emit(tokens.listing(conn), args.json)
    return 0


def tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from registre.bootstrap import Registre
    from registre.services import tokens

    registre = Registre(settings)
    with registre.connect("admin") as conn:
        emit(tokens.revoke(conn, args.name, registre.clock()), args.json)
    return 0


def lookup(args: argparse.Namespace, settings: Settings) -> int:
    emit(desk(args, settings).lookup(email=args.email, phone=args.phone), args.json)
    return 0

"""The `registre` command line (see shared/spec/cli.md).

Commands stay thin: they parse arguments, call one service and print its answer as text or
JSON. Each command module adds its parsers with ``set_defaults(func=handler)``; the handlers
import what they use when they run, so that `registre --help` loads no broker or database
client.
"""

from __future__ import annotations

import argparse
import sys

from registre.cli import audit, core, erasure, init, requests, staff, web
from registre.cli.errors import user_errors
from registre.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="registre",
        description="An event-sourced personal-data ledger: publish facts about people, "
                    "answer for them.")
    p.add_argument("--log-level", default="warning", help="debug, info, warning (default)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (core, audit, erasure, init, requests, web, staff):
        module.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from registre.logs import configure

    configure(args.log_level)
    with user_errors(debug=args.log_level == "debug") as failed:
        return args.func(args, Settings.from_env())
    print(f"registre {args.command}: {failed.message}", file=sys.stderr)
    return failed.code


if __name__ == "__main__":  # pragma: no cover - run as a script: use the imported module
    from registre.cli import main as imported_main

    sys.exit(imported_main())

"""The `registre` command line (see shared/spec/cli.md). Commands stay thin: they parse
arguments, call one service function and print its answer as text or JSON."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from projections.jsonb import use_fast_json
from registre.cli.errors import UserError, user_errors
from registre.cli.output import render_text
from registre.logs import configure
from registre.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
_COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = fn
        return fn

    return register


def emit(answer: Any, as_json: bool, text: Callable[[Any], str] | None = None) -> None:
    """Print one JSON document, or the human-readable text of it."""
    if as_json:
        print(json.dumps(answer, ensure_ascii=False, default=str))
    else:
        print((text or render_text)(answer))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="registre", description=__doc__.split("\n")[0])
    p.add_argument("--log-level", default="warning", help="debug, info, warning (default)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("demo", help="the whole story on the embedded default, start to finish")
    r = sub.add_parser("run", help="run the processors (and the embedded default) until Ctrl-C")
    r.add_argument("--workers", type=int, default=1, help="processor worker processes")
    pub = sub.add_parser("publish", help="publish JSON-lines events from FILE (- for stdin)")
    pub.add_argument("file")
    sub.add_parser("info", help="where things are (JSON)")
    w = sub.add_parser("wait", help="return when every processor applied everything published")
    w.add_argument("--timeout", type=float, default=60.0)
    v = sub.add_parser("view", help="the current customer view of SUBJECT")
    v.add_argument("subject")
    v.add_argument("--json", action="store_true")
    v.add_argument("--retained", action="store_true",
                   help="compliance read of data retained after deletion (needs --case)")
    v.add_argument("--case", help="case reference of a compliance read")
    v.add_argument("--reader", default=os.environ.get("REGISTRE_READER") or getpass.getuser(),
                   help="who reads (recorded in the access log)")
    sub.add_parser("rebuild", help="rebuild every projection from the log")

    from registre.cli import audit as commands_audit
    from registre.cli import erasure as commands_erasure

    commands_audit.add_parsers(sub)
    commands_erasure.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.log_level)
    use_fast_json()
    from registre.cli import audit, core, erasure  # noqa: F401 - handlers

    settings = Settings.from_env()
    with user_errors() as failed:
        return _COMMANDS[args.command](args, settings)
    print(f"registre {args.command}: {failed.message}", file=sys.stderr)
    return failed.code


if __name__ == "__main__":  # pragma: no cover - run as a script: use the imported module
    from registre.cli import main as imported_main

    sys.exit(imported_main())


__all__ = ["UserError", "command", "emit", "main"]

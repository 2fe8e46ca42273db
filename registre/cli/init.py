"""`registre init`: the one-shot initialisation of an external deployment (the compose file's
``init`` job): wait for Kafka and PostgreSQL, create the topics, apply the migrations, check
the master key. Exit codes: 0 ready, 2 configuration, 3 Kafka, 4 PostgreSQL, 5 master key."""

from __future__ import annotations

import argparse

from registre.settings import Settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="initialise an external deployment (topics, migrations, "
                                    "master-key check), then exit")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for the services (default REGISTRE_INIT_TIMEOUT or 120)")
    p.add_argument("--skip-key-check", action="store_true",
                   help="do not require nor check the master key")
    p.set_defaults(func=init)


def init(args: argparse.Namespace, settings: Settings) -> int:
    from registre.services.init import run_job

    return run_job(settings.env, args.timeout, check_key=not args.skip_key_check)

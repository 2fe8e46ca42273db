"""Turning expected failures into one-line messages and exit codes (no traceback).

The exception types are matched by name through `sys.modules`: a failure of a library the
command never imported cannot happen, so nothing is imported here to recognise it, and
`registre --help` stays fast.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from registre.errors import UserError

# (module, class): failures a user can act on, shown as their own one-line message
_EXPECTED = (
    ("registre.settings", "NotRunning"), ("registre.settings", "SettingError"),
    ("events.crypto", "MasterKeyError"), ("events.validation", "InvalidEvent"),
    ("events.publisher", "PublishError"), ("events.codec", "DecodeError"),
    ("registre.services.embedded", "AlreadyRunning"),
    ("deploy.runtime", "RuntimeErrorOnStart"), ("projections.archive", "LogShorter"),
    ("projections.access_log", "MissingCaseReference"),
    ("registre.services.audit", "UnknownSubject"), ("registre.services.audit", "BadQuestion"),
    ("registre.services.audit", "RecordsPastRetention"),
    ("registre.services.erasure", "NoSuchSubject"), ("registre.services.erasure", "BadBackup"),
    ("registre.files", "UnsafePath"), ("processors.rules.requests", "RequestRefused"),
    ("registre.services.tokens", "BadTokenRequest"), ("registre.services.tokens", "NoSuchToken"),
    ("projections.tokens", "NameTaken"), ("projections.shadow", "RebuildRefused"),
    ("registre.services.staff", "BadStaffRequest"), ("registre.services.staff", "NoSuchStaff"),
    ("projections.staff", "StaffNameTaken"),
)
_BUILTIN = (LookupError, TimeoutError, OSError)


@dataclass
class Failure:
    message: str = ""
    code: int = 1


def _loaded(module: str, name: str) -> type[BaseException] | None:
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def describe(exc: BaseException) -> str | None:
    """The one line to print for an expected failure; None for a bug."""
    kafka_errors = _loaded("kafka.errors", "KafkaError")
    if kafka_errors is not None and isinstance(exc, kafka_errors):
        return f"broker unreachable or refused: {type(exc).__name__}"
    operational = _loaded("psycopg", "OperationalError")
    if operational is not None and isinstance(exc, operational):
        lines = str(exc).strip().splitlines()
        return "database unreachable: " + (lines[0] if lines else type(exc).__name__)
    for module, name in _EXPECTED:
        kind = _loaded(module, name)
        if kind is not None and isinstance(exc, kind):
            return str(exc) or type(exc).__name__
    if isinstance(exc, _BUILTIN) and not isinstance(exc, KeyError | IndexError):
        return str(exc) or type(exc).__name__
    return None


@contextmanager
def user_errors(debug: bool = False) -> Iterator[Failure]:
    """Catch every failure; the caller prints ``failure.message`` when one happened.

    An unexpected one (a bug) is named by its type only, since its text may hold a value;
    with ``debug`` its traceback goes to stderr first.
    """
    failure = Failure()
    try:
        yield failure
    except UserError as exc:
        failure.message, failure.code = str(exc), exc.code
    except KeyboardInterrupt:
        failure.message, failure.code = "interrupted", 130
    except Exception as exc:
        message = describe(exc)
        if message is None:
            if debug:
                traceback.print_exc()
            message = (f"unexpected error ({type(exc).__name__}); run again with"
                       " --log-level debug for details")
            failure.code = 1
        failure.message = message

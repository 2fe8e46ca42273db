"""Turning expected failures into one-line messages and exit codes (no traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from kafka.errors import KafkaError

from deploy.runtime import RuntimeErrorOnStart
from events.codec import DecodeError
from events.crypto import MasterKeyError
from events.publisher import PublishError
from events.validation import InvalidEvent
from registre.services.embedded import AlreadyRunning
from registre.settings import NotRunning


class UserError(Exception):
    """A mistake or a state the user can fix; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Failure:
    message: str = ""
    code: int = 1


_EXPECTED = (
    NotRunning, MasterKeyError, InvalidEvent, PublishError, DecodeError, AlreadyRunning,
    RuntimeErrorOnStart, LookupError, TimeoutError, OSError,
)


@contextmanager
def user_errors() -> Iterator[Failure]:
    """Catch expected failures; the caller prints ``failure.message`` when one happened."""
    failure = Failure()
    try:
        yield failure
    except UserError as exc:
        failure.message, failure.code = str(exc), exc.code
    except KafkaError as exc:
        failure.message = f"broker unreachable or refused: {type(exc).__name__}"
    except psycopg.OperationalError as exc:
        failure.message = "database unreachable: " + str(exc).strip().splitlines()[0]
    except _EXPECTED as exc:
        failure.message = str(exc) or type(exc).__name__
    except KeyboardInterrupt:
        failure.message, failure.code = "interrupted", 130

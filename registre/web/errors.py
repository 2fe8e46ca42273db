"""Every error of the web service is ``{"error": "one line"}`` with a 4xx or 5xx status.

Expected failures keep their one-line message (they name the field, never a personal value);
FastAPI's validation errors are rewritten to one line naming where (``query.at``) and why,
without the input; anything else is caught by `middleware.Guard` and answered 500 by type only.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from kafka.errors import KafkaError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response

from events.publisher import PublishError
from events.validation import InvalidEvent
from processors.rules.requests import RequestRefused
from projections.access_log import MissingCaseReference
from projections.tokens import NameTaken
from registre.errors import UserError
from registre.output import to_json
from registre.services.audit import BadQuestion, RecordsPastRetention, UnknownSubject
from registre.services.erasure import NoSuchSubject
from registre.services.requests import UnknownRequest
from registre.services.tokens import BadTokenRequest, NoSuchToken
from registre.settings import NotRunning

log = structlog.get_logger("registre.web")

# exception type -> HTTP status; the message is the exception's own line
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (UnknownSubject, 404), (NoSuchSubject, 404), (NoSuchToken, 404), (UnknownRequest, 404),
    (RequestRefused, 409),
    (RecordsPastRetention, 410),
    (BadQuestion, 422), (MissingCaseReference, 422), (InvalidEvent, 422),
    (BadTokenRequest, 422), (NameTaken, 409), (UserError, 400),
    (PublishError, 503), (NotRunning, 503),
)
UNAVAILABLE = ((PoolTimeout, "database busy: every connection of this web service is in use,"
                              " ask again"),
               (psycopg.OperationalError, "database unreachable"),
               (KafkaError, "broker unreachable"))


class ApiError(Exception):
    """An answer that is an error: status and one line (and headers, e.g. WWW-Authenticate)."""

    def __init__(self, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, message: str,
                   headers: Mapping[str, str] | None = None) -> Response:
    line = " ".join(str(message).split()) or "error"
    return Response(to_json({"error": line}), status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


def validation_line(exc: RequestValidationError) -> str:
    """``query.at: Field required`` from the first error; never the input value."""
    errors = exc.errors()
    if not errors:
        return "request: not what this route takes"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "request"
    return f"{where}: {first.get('msg', 'invalid')}"


def install(app: FastAPI) -> None:
    """Register the handlers that turn expected failures into ``{"error": ...}``."""

    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, validation_line(exc))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for kind, status in STATUS:
        app.add_exception_handler(kind, _known(status))
    for kind, message in UNAVAILABLE:
        app.add_exception_handler(kind, _unavailable(message))


def _known(status: int):  # noqa: ANN202 - a Starlette exception handler
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(status, str(exc) or type(exc).__name__)

    return handle


def _unavailable(message: str):  # noqa: ANN202 - a Starlette exception handler
    async def handle(request: Request, exc: Exception) -> Response:
        log.warning("service unavailable", reason=type(exc).__name__)
        return error_response(503, f"{message} ({type(exc).__name__})")

    return handle

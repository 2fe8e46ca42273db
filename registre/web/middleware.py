"""Three small ASGI layers around the application, outermost first:

* `RequestLog`: one structlog line per request: method, route *template* (never the path's
  values nor the query string, which may hold an email), status, duration and the token's
  name;
* `BodyLimit`: a body over the route's limit is answered 413 before it is read (from its
  Content-Length), or as soon as a streamed body passes the limit;
* `Guard`: an exception nothing else handled is answered 500 ``{"error": ...}`` naming its
  type only, and logged by type only: never a traceback, never a value.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registre.web.errors import error_response

log = structlog.get_logger("registre.web")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: over the limit of {limit} bytes for this route")


class BodyLimit:
    """Refuse bodies over ``limit_for(path)`` bytes with 413 (JSON), reading no more of them."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await error_response(413, BodyTooLarge(limit).detail)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Guard:
    """The last resort: a bug becomes a 500 naming its type, logged without a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes with a traceback
            log.error("unexpected error", error=type(exc).__name__, method=scope.get("method"),
                      route=_route(scope))
            if not started:
                await error_response(500, f"internal error ({type(exc).__name__})")(
                    scope, receive, send)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "(no route)"


class RequestLog:
    """One line per request, with the route template and the token's name, never a value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            caller = scope.get("state", {}).get("caller")
            log.info("request", method=scope.get("method"), route=_route(scope), status=status,
                     ms=round((time.perf_counter() - start) * 1000, 1),
                     token=getattr(caller, "name", None))

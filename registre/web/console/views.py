"""Rendering the console: Jinja2 templates over the compliance desk's documents, their JSON
twins, the error pages, and the route class that turns every failure into a page.

Each page is built from the same documents the desk returns (and the API sends); adding
``?format=json`` to a page's address gives those documents as JSON instead of HTML, like
datasette's HTML/JSON twins. Every answer of the console carries headers that keep it out of
caches and frames and allow nothing but this site's own stylesheet.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from registre.output import to_json
from registre.web import errors
from registre.web.console import dates, sentences
from registre.web.console.dates import BadInstant
from registre.web.console.session import (
    FLASH_COOKIE,
    LoginRequired,
    Officer,
    Refused,
    clear_cookie,
    take_flash,
)

log = structlog.get_logger("registre.web")

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self';"
                               " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NAV = (("search", "/console/", "Search"), ("requests", "/console/requests", "Requests"),
       ("schedule", "/console/schedule", "Schedule"), ("integrity", "/console/integrity",
                                                       "Integrity"))

env = Environment(loader=PackageLoader("registre.web.console", "templates"),
                  autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(both=dates.both, pair=dates.pair, day=dates.day, local_value=dates.local_value,
                   word=sentences.word, join_words=sentences.join,
                   short=lambda text: (text or "")[:8])


def wants_json(request: Request) -> bool:
    return request.query_params.get("format") == "json"


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(to_json(doc), status_code=status, media_type="application/json")


def page(request: Request, officer: Officer | None, template: str, doc: Mapping[str, Any],
         view: Mapping[str, Any] | None = None, status: int = 200, nav: str = "") -> Response:
    """The page of ``template`` for ``doc`` (the desk's documents), or ``doc`` as JSON."""
    if wants_json(request):
        return json_response(doc, status)
    shown = take_flash(request)
    html = env.get_template(template).render(
        doc=doc, v=view or {}, officer=officer, csrf=officer.csrf if officer else "",
        flash=shown, nav=NAV, current=nav, path=request.url.path)
    response = HTMLResponse(html, status_code=status)
    if shown:
        clear_cookie(response, request, FLASH_COOKIE)
    return response


def error_page(request: Request, status: int, message: str) -> Response:
    """One line, as a page (or ``{"error": ...}`` for a JSON twin); never a traceback."""
    line = " ".join(str(message).split()) or "error"
    if wants_json(request):
        return json_response({"error": line}, status)
    officer = getattr(request.state, "caller", None)  # set once the session was checked
    officer = officer if isinstance(officer, Officer) else None
    html = env.get_template("error.html").render(
        status=status, message=line, officer=officer, csrf=officer.csrf if officer else "",
        flash=None, nav=NAV if officer and officer.role == "compliance" else (), current="",
        path=request.url.path)
    return HTMLResponse(html, status_code=status)


def from_elsewhere(request: Request) -> bool:
    """Whether the browser says this request comes from a page of another site
    (``Sec-Fetch-Site``): a link in an email, a ticket, a page that wants a read recorded."""
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


def known(exc: Exception) -> tuple[int, str] | None:
    """(status, line) of an expected failure, as the API answers it; None for a bug."""
    if isinstance(exc, BadInstant):
        return 422, str(exc)
    if isinstance(exc, errors.ApiError):
        return exc.status, exc.message
    for kind, status in errors.STATUS:
        if isinstance(exc, kind):
            return status, str(exc) or type(exc).__name__
    for kind, message in errors.UNAVAILABLE:
        if isinstance(exc, kind):
            log.warning("service unavailable", reason=type(exc).__name__)
            return 503, f"{message} ({type(exc).__name__}): try again in a moment"
    return None


def _answer(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequired):
        return RedirectResponse(f"/console/login?next={quote(exc.next, safe='')}", 303)
    if isinstance(exc, Refused):
        return error_page(request, exc.status, exc.message)
    if isinstance(exc, RequestValidationError):
        return error_page(request, 422, errors.validation_line(exc))
    found = known(exc)
    if found is None:
        log.error("unexpected error", error=type(exc).__name__,
                  route=getattr(request.scope.get("route"), "path", "(console)"))
        return error_page(request, 500, f"internal error ({type(exc).__name__})")
    return error_page(request, *found)


class ConsoleRoute(APIRoute):
    """A console route: every failure becomes a page (or a redirect to the login page), and
    every answer carries the console's headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - answered as a page, by type only if a bug
                response = _answer(request, exc)
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return guarded

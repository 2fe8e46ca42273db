"""Who is logged in to the console, from the session cookie; the cookies the console sets.

* ``registre_session``: the session token (`registre.services.staff`: only its SHA-256 is
  stored), HttpOnly, SameSite=Lax, Path=/console, Secure when served over https, for the
  session's absolute lifetime;
* ``registre_login``: the login form's double-submit token, HttpOnly, SameSite=Strict, only
  sent to /console/login;
* ``registre_flash``: the one-line outcome of an action, shown once by the next page (no
  personal value: an event type, an id, a deadline, or an error that names a field).

A page is for a logged-in person with the compliance role (`require_officer`); a visitor who
is not logged in is sent to the login page (`LoginRequired`, answered 303). Every POST also
needs the session's CSRF token and no foreign ``Origin`` (`require_form_officer`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from registre.services import staff as people
from registre.services.staff import Staff
from registre.web.console.csrf import HOME, csrf_ok, csrf_token, same_origin

SESSION_COOKIE = "registre_session"
LOGIN_COOKIE = "registre_login"
FLASH_COOKIE = "registre_flash"
PATH = "/console"


class LoginRequired(Exception):
    """Not logged in: go to the login page, then back to ``next``."""

    def __init__(self, next_url: str = HOME) -> None:
        super().__init__("login required")
        self.next = next_url


class Refused(Exception):
    """A request the console refuses with a status and one line (a page says it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Officer:
    """A logged-in person: the reader the access log records, and their session's token."""

    staff: Staff
    token: str = field(repr=False)  # the session's secret: never in a repr or a log

    @property
    def name(self) -> str:
        return self.staff.name

    @property
    def role(self) -> str:
        return self.staff.role

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


def officer_of(request: Request) -> Officer | None:
    """The person whose live session the request's cookie holds, if any."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    context = request.app.state.web.context
    with context.connect("compliance") as conn:
        found = people.session_of(conn, token, context.clock())
    return Officer(found, token) if found else None


def _here(request: Request) -> str:
    if request.method != "GET":
        return HOME
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def require_officer(request: Request) -> Officer:
    """A dependency: the logged-in person with the compliance role (else login, or 403)."""
    found = officer_of(request)
    if found is None:
        raise LoginRequired(_here(request))
    request.state.caller = found  # the request log names who asked
    if found.role != "compliance":
        raise Refused(403, f"your role ({found.role}) does not open the compliance pages")
    return found


async def require_form_officer(request: Request) -> Officer:
    """A dependency for every POST: logged in, the session's CSRF token, no foreign Origin."""
    found = await run_in_threadpool(require_officer, request)
    form = await request.form()
    given = form.get("csrf")
    if not same_origin(request.headers.get("origin"), request.url.scheme, request.url.netloc) \
            or not csrf_ok(found.token, given if isinstance(given, str) else None):
        raise Refused(403, "this form did not come from your console session (it may have "
                           "expired): reload the page and try again")
    return found


# what a route asks for: a page, the logged-in officer; a form, also its session's CSRF token
Reader = Annotated[Officer, Depends(require_officer)]
Poster = Annotated[Officer, Depends(require_form_officer)]


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int,
               path: str = PATH, samesite: str = "lax") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                        secure=request.url.scheme == "https", samesite=samesite)  # type: ignore[arg-type]


def clear_cookie(response: Response, request: Request, name: str, path: str = PATH) -> None:
    response.delete_cookie(name, path=path, httponly=True, secure=request.url.scheme == "https",
                           samesite="lax")


def flash(response: Response, request: Request, kind: str, text: str) -> None:
    """Say ``text`` once on the next page (``kind``: ok or error)."""
    raw = json.dumps({"kind": kind, "text": text[:1500]}).encode()
    set_cookie(response, request, FLASH_COOKIE, base64.urlsafe_b64encode(raw).decode(), 120)


def take_flash(request: Request) -> dict[str, Any] | None:
    """The message the previous action left, if any (the page clears the cookie)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        found = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError):
        return None
    if not isinstance(found, dict) or found.get("kind") not in ("ok", "error"):
        return None
    return {"kind": found["kind"], "text": str(found.get("text", ""))}

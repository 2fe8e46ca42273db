"""The console's way in and its first page: login, logout, and search by subject id, email or
phone number (the keyed lookup index: only a hash of the value meets the database)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from registre.services import staff as people
from registre.services.audit import BadQuestion, UnknownSubject
from registre.services.compliance import Compliance
from registre.web.console.actions import Doc, desk
from registre.web.console.csrf import HOME, login_ok, new_login_token, safe_next, same_origin
from registre.web.console.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Poster,
    Reader,
    clear_cookie,
    flash,
    officer_of,
    set_cookie,
)
from registre.web.console.views import ConsoleRoute, page

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
FAILED_LOGIN_DELAY = 0.5  # seconds added to every refused login
_PHONE = re.compile(r"^\+?[\d\s().-]{6,40}$")
_LOGIN_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


# --- login and logout ---------------------------------------------------------------------


def _login_page(request: Request, token: str, next_url: str, error: str | None,
                status: int) -> Response:
    response = page(request, None, "login.html", {"error": error},
                    {"login_token": token, "next": next_url}, status=status)
    set_cookie(response, request, LOGIN_COOKIE, token, 3600, path="/console/login",
               samesite="strict")
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    if officer_of(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    token = request.cookies.get(LOGIN_COOKIE) or ""
    token = token if _LOGIN_TOKEN.match(token) else new_login_token()
    return _login_page(request, token, safe_next(next), None, 200)


async def _refuse(request: Request, token: str, next_url: str, message: str,
                  status: int) -> Response:
    await asyncio.sleep(FAILED_LOGIN_DELAY)
    return _login_page(request, token, next_url, message, status)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    name, password = str(form.get("username") or "").strip(), str(form.get("password") or "")
    next_url = safe_next(str(form.get("next") or ""))
    cookie = request.cookies.get(LOGIN_COOKIE)
    if not same_origin(request.headers.get("origin"), request.url.scheme, request.url.netloc) \
            or not login_ok(cookie, str(form.get("csrf") or "")):
        return await _refuse(request, new_login_token(), next_url, "The login form expired: "
                             "please log in again.", 403)
    console = request.app.state.console
    name_key = name.lower()[:64]
    address = request.client.host if request.client else "-"
    if console.names.blocked(name_key) or console.addresses.blocked(address):
        return await _refuse(request, str(cookie), next_url, "Too many failed attempts: wait a "
                             "few minutes, then try again.", 429)
    context = request.app.state.web.context

    def check() -> str:
        with context.connect("compliance") as conn:
            staff = people.authenticate(conn, name, password)
            return people.open_session(conn, staff, context.clock())

    try:
        token = await run_in_threadpool(check)
    except people.LoginRefused:
        console.names.failed(name_key)
        console.addresses.failed(address)
        return await _refuse(request, str(cookie), next_url, "Wrong name or password.", 403)
    console.names.succeeded(name_key)
    response = RedirectResponse(next_url, status_code=303)
    set_cookie(response, request, SESSION_COOKIE, token, people.SESSION_HOURS * 3600)
    clear_cookie(response, request, LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout")
def logout(request: Request, officer: Poster) -> Response:
    context = request.app.state.web.context
    with context.connect("compliance") as conn:
        people.close_session(conn, officer.token)
    response = RedirectResponse("/console/login", status_code=303)
    clear_cookie(response, request, SESSION_COOKIE)
    flash(response, request, "ok", "You are logged out.")
    return response


# --- search -------------------------------------------------------------------------------


def _found(found: Compliance, subjects: list[str]) -> list[Doc]:
    out = []
    for subject in subjects:
        try:
            out.append(found.summary(subject))
        except UnknownSubject:
            out.append({"subject_id": subject, "status": "unknown"})
    return out


def _by_id(found: Compliance, q: str) -> list[str] | None:
    """[q] if q is a known subject id, [] if unknown, None if it is not a subject id."""
    try:
        found.summary(q)
    except UnknownSubject:
        return []
    except BadQuestion:
        return None
    return [q]


def search(found: Compliance, q: str) -> Doc:
    """The subjects a search names: by email or phone (keyed index), or by subject id."""
    if "@" in q:
        by, subjects = "email", found.lookup(email=q)["subjects"]
    elif _PHONE.match(q) and sum(c.isdigit() for c in q) >= 6:
        by, subjects = "phone", found.lookup(phone=q)["subjects"]
        if not subjects and (same := _by_id(found, q)):
            by, subjects = "subject_id", same
    else:
        by, subjects = "subject_id", _by_id(found, q)
        if subjects is None:
            return {"by": None, "subjects": [], "error": "not a subject id, an email address "
                                                        "or a phone number"}
    return {"by": by, "subjects": _found(found, subjects), "error": None}


@router.get("/")
@router.get("/search")
def search_page(request: Request, officer: Reader,
                q: Annotated[str | None, Query(max_length=1000)] = None) -> Response:
    found = desk(request, officer)
    counts = found.requests("overdue")["counts"]
    q = (q or "").strip()
    result = None
    if q:
        try:
            result = search(found, q)
        except BadQuestion as exc:
            result = {"by": None, "subjects": [], "error": str(exc)}
    return page(request, officer, "search.html", {"requests": counts, "search": result},
                {"q": q}, nav="search")


@router.get("", include_in_schema=False)
def console_root() -> Response:
    return RedirectResponse(HOME, status_code=307)

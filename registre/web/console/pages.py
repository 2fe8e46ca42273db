"""The ledger-wide pages: data-subject requests (with extending and completing them), the
retention schedule, and the integrity of the log (the last verification, and running one)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from events.model import format_instant
from registre.web.console import dates
from registre.web.console.actions import Doc, act, desk, ordered
from registre.web.console.session import (
    Poster,
    Reader,
    Refused,
    flash,
)
from registre.web.console.subject import choices
from registre.web.console.views import ConsoleRoute, page

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
Back = Annotated[str, Form(max_length=2000)]
MAX_DAYS = 36_600


@router.get("/requests")
def requests_page(request: Request, officer: Reader,
                  status: Annotated[Literal["open", "overdue", "done", "all"], Query()] = "all"
                  ) -> Response:
    found = desk(request, officer)
    doc = found.requests(None if status == "all" else status)
    return page(request, officer, "requests.html", doc,
                {"choices": choices(found), "status": status, "requests": ordered(doc)},
                nav="requests")


def _completed(answer: Doc) -> str:
    said = (f"Request {answer['request_id'][:8]} completed: "
            f"{answer['outcome'].replace('_', ' ')}.")
    if answer.get("matching"):
        m = answer["matching"]
        said += f" Answered by the {m['type']} of {dates.both(m['at'])}."
    if answer.get("problem"):
        said += f" PROBLEM: {answer['problem']}."
    return said


@router.post("/requests/{request_id}/extend")
def extend(request: Request, request_id: str, officer: Poster,
           months: Annotated[int, Form(ge=1, le=1200)],
           reason: Annotated[str, Form(min_length=1, max_length=1000)],
           back: Back = "/console/requests") -> Response:
    return act(request, officer, back,
               lambda d: d.extend_request(request_id, months, reason.strip()),
               lambda a: f"Request {a['request_id'][:8]} extended by {months} month(s): now due"
                         f" {dates.both(a['deadline'])}.")


@router.post("/requests/{request_id}/complete")
def complete(request: Request, request_id: str, officer: Poster,
             outcome: Annotated[str, Form(max_length=40)],
             reason: Annotated[str | None, Form(max_length=1000)] = None,
             back: Back = "/console/requests") -> Response:
    why = reason.strip() if reason and reason.strip() else None
    return act(request, officer, back,
               lambda d: d.complete_request(request_id, outcome, why), _completed)


@router.get("/schedule")
def schedule_page(request: Request, officer: Reader,
                  days: Annotated[int, Query(ge=0, le=MAX_DAYS)] = 30) -> Response:
    doc = desk(request, officer).schedule(days)
    return page(request, officer, "schedule.html", doc, nav="schedule")


@router.get("/integrity")
def integrity_page(request: Request, officer: Reader) -> Response:
    last: dict[str, Any] | None = request.app.state.console.last_verification
    return page(request, officer, "integrity.html", {"last": last}, nav="integrity")


@router.post("/integrity")
async def verify(request: Request, officer: Poster) -> Response:
    started: datetime = request.app.state.web.context.clock()
    result = await run_in_threadpool(desk(request, officer).verify)
    request.app.state.console.last_verification = {
        "at": format_instant(started), "by": officer.name, "result": result}
    response = RedirectResponse("/console/integrity", status_code=303)
    flash(response, request, "ok" if result["ok"] else "error",
          "The log is intact." if result["ok"] else "THE LOG WAS ALTERED: see below.")
    return response


@router.get("/{anything:path}")
def not_found(anything: str) -> Response:
    """Any other address under /console: a page, not the API's JSON."""
    raise Refused(404, "no such page in the console")

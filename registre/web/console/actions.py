"""What the console's pages and actions share: the desk of the logged-in person, subject ids
checked without echoing them, and an action's publish, wait, say, go back.

An action publishes its event through the compliance desk (the API's code path: the web
process's one publisher), waits a few seconds for the processors to apply it so that the page
it returns to already shows it, leaves a one-line message for that page, and answers 303 (a
reload never publishes twice). A refusal (a bad value, an unknown request, what the rules
refuse) becomes that message instead, naming the field, never a personal value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from events.validation import InvalidEvent, check_format
from registre.services.compliance import Compliance
from registre.web.console import dates
from registre.web.console.csrf import safe_next
from registre.web.console.session import Officer, Refused, flash
from registre.web.console.views import known

Doc = dict[str, Any]
APPLY_WAIT_SECONDS = 5.0


def desk(request: Request, officer: Officer) -> Compliance:
    """The compliance desk, reading as the logged-in person (recorded in the access log)."""
    return Compliance(request.app.state.web.context, officer.name)


def subject_id(value: str) -> str:
    """A path's subject id; refused naming the field only (it may be an email typed there)."""
    try:
        check_format("subject_id", value, "subject_id")
    except InvalidEvent as exc:
        raise Refused(422, str(exc)) from None
    return value


def case_of(value: str | None) -> str | None:
    """A case reference from a form or a query: trimmed, None when blank; at most 200
    characters."""
    value = (value or "").strip()
    if len(value) > 200:
        raise Refused(422, "case: at most 200 characters")
    return value or None


def subject_page(subject: str, case: str | None, anchor: str = "") -> str:
    query = f"?case={quote(case, safe='')}" if case else ""
    return f"/console/subjects/{quote(subject, safe='')}{query}{'#' + anchor if anchor else ''}"


STATUS_ORDER = {"overdue": 0, "open": 1, "done": 2}


def ordered(listing: Doc) -> list[Doc]:
    """A requests document's requests as an officer reads them: overdue first (the longest
    overdue first), then open (the soonest due first), then done (the latest first); each
    overdue one says how late it is."""
    def key(r: Doc) -> tuple:
        rank = STATUS_ORDER.get(r["status"], 3)
        when = r["completed_at"] if r["status"] == "done" else r["deadline"]
        stamp = dates.instant(when).timestamp() if when else 0.0
        return rank, -stamp if r["status"] == "done" else stamp

    return [{**r, "late_by": dates.days_late(r["deadline"], listing["now"])
             if r["status"] == "overdue" else None}
            for r in sorted(listing["requests"], key=key)]


def wait_applied(found: Compliance, event_id: str, seconds: float = APPLY_WAIT_SECONDS) -> bool:
    """Whether the processors applied the event within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not found.applied(event_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def act(request: Request, officer: Officer, back: str, do: Callable[[Compliance], Doc],
        said: Callable[[Doc], str]) -> Response:
    """Publish through the desk, wait for the processors, say what happened, go ``back``."""
    found = desk(request, officer)
    response = RedirectResponse(safe_next(back), status_code=303)
    try:
        answer = do(found)
    except Exception as exc:  # noqa: BLE001 - an expected refusal becomes the page's message
        refusal = (exc.status, exc.message) if isinstance(exc, Refused) else known(exc)
        if refusal is None or refusal[0] >= 500:
            raise
        flash(response, request, "error", f"Not done: {refusal[1]}")
        return response
    applied = wait_applied(found, answer["event_id"])
    tail = ("" if applied else " The processors have not applied it yet: reload this page in"
            " a moment to see it.")
    flash(response, request, "ok", said(answer) + tail)
    return response

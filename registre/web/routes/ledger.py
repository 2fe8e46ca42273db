"""Questions about the whole ledger: lookup by email or phone, the schedule, integrity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from registre.services.tokens import Caller
from registre.web import documents as docs
from registre.web.auth import require
from registre.web.errors import ApiError
from registre.web.routes.common import desk, document, instant

router = APIRouter(prefix="/v1", tags=["ledger"])
Reader = Annotated[Caller, Depends(require("compliance"))]
Value = Annotated[str | None, Query(min_length=1, max_length=1000)]
MAX_DAYS = 36_600


@router.get("/lookup", responses=docs.responses(docs.LOOKUP),
            summary="subjects holding this email or phone (keyed lookup index)")
def lookup(request: Request, caller: Reader, email: Value = None,
           phone: Value = None) -> Response:
    if (email is None) == (phone is None):
        raise ApiError(422, "query: give exactly one of email or phone")
    return document(desk(request, caller).lookup(email=email, phone=phone))


@router.get("/schedule", responses=docs.responses(docs.SCHEDULE),
            summary="destructions due in the next N days, active holds "
                    "(as `registre audit schedule --json`)")
def schedule(request: Request, caller: Reader,
             days: Annotated[int, Query(ge=0, le=MAX_DAYS)] = 30,
             now: Annotated[str | None, Query(description="count from this RFC 3339 instant "
                                                          "(default: now)")] = None
             ) -> Response:
    at = instant(now, "now") if now is not None else None
    return document(desk(request, caller).schedule(days, at))


@router.get("/verify", responses=docs.responses(docs.VERIFY),
            summary="integrity of the whole log (as `registre verify --json`)")
def verify(request: Request, caller: Reader) -> Response:
    return document(desk(request, caller).verify())

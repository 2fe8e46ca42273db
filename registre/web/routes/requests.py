"""Data-subject requests (domain.md, GDPR art. 12(3)): list, record, extend, complete, show.

Thin routes over the compliance desk's request methods (`Compliance.open_request`,
`extend_request`, `complete_request`, `requests`, `request`), answering the documents
`registre requests ... --json` prints. Errors as `registre.services.requests` documents them:
422 for a malformed value (`BadQuestion`, `InvalidEvent`), 404 for an unknown request
(`UnknownRequest`), 409 for what the rules refuse (`RequestRefused`: a second or late
extension, a request already completed).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from events.catalogue import load_catalogue
from events.validation import MAX_STRING
from registre.services.tokens import Caller
from registre.web import documents as docs
from registre.web.auth import require
from registre.web.routes.common import SUBJECT_PATTERN, desk, document, instant

router = APIRouter(prefix="/v1/requests", tags=["requests"])
Reader = Annotated[Caller, Depends(require("compliance"))]
RequestId = Annotated[str, Path(description="the request's UUID",
                                examples=["19d0ea45-ad3a-4ad8-a36c-afa347c69ed1"])]
_named = load_catalogue().named_types


def _symbols(name: str) -> list[str]:
    return list(_named[f"registre.events.{name}"]["symbols"])


class OpenBody(BaseModel):
    """A request received from a person (publishes RequestReceived)."""

    model_config = ConfigDict(extra="forbid")
    subject_id: str = Field(pattern=SUBJECT_PATTERN, examples=["acc-000042"])
    kind: str = Field(json_schema_extra={"enum": _symbols("RequestKind")})
    channel: str = Field(json_schema_extra={"enum": _symbols("RequestChannel")})
    identity_verified: bool = False
    received_at: str | None = Field(
        default=None, description="RFC 3339 instant of receipt, if earlier than now (the "
                                  "deadline runs from it)", examples=["2026-03-03T15:00:00+01:00"])


class ExtendBody(BaseModel):
    """An extension of the deadline (publishes RequestExtended): once, within the first month."""

    model_config = ConfigDict(extra="forbid")
    months: int = Field(ge=1, le=1200, description="further months (1 or 2 by default policy)")
    reason: str = Field(min_length=1, max_length=MAX_STRING,
                        description="why, as told to the person")


class CompleteBody(BaseModel):
    """The answer to a request (publishes RequestCompleted)."""

    model_config = ConfigDict(extra="forbid")
    outcome: str = Field(json_schema_extra={"enum": _symbols("RequestOutcome")})
    reason: str | None = Field(default=None, min_length=1, max_length=MAX_STRING)


@router.get("", responses=docs.responses(docs.REQUESTS),
            summary="data-subject requests: open, overdue, done (as `registre requests list`)")
def list_requests(request: Request, caller: Reader,
                  status: Annotated[Literal["open", "overdue", "done"] | None, Query(
                      description="only these (default: all)")] = None,
                  subject: Annotated[str | None, Query(pattern=SUBJECT_PATTERN,
                                                       description="only this subject's")] = None
                  ) -> Response:
    return document(desk(request, caller).requests(status, subject))


@router.post("", responses=docs.responses(docs.REQUEST_ACTION),
             summary="record a request received from a person: publishes RequestReceived")
def open_request(request: Request, body: OpenBody, caller: Reader) -> Response:
    at = instant(body.received_at, "received_at") if body.received_at is not None else None
    return document(desk(request, caller).open_request(
        body.subject_id, body.kind, body.channel, body.identity_verified, at))


@router.get("/{request_id}", responses=docs.responses(docs.REQUEST, 404),
            summary="one request, with its matching erasure or export (as `registre requests "
                    "show`)")
def show_request(request: Request, request_id: RequestId, caller: Reader) -> Response:
    return document(desk(request, caller).request(request_id))


@router.post("/{request_id}/extend", responses=docs.responses(docs.REQUEST_ACTION, 404, 409),
             summary="extend a request's deadline: publishes RequestExtended")
def extend_request(request: Request, request_id: RequestId, body: ExtendBody,
                   caller: Reader) -> Response:
    return document(desk(request, caller).extend_request(request_id, body.months, body.reason))


@router.post("/{request_id}/complete", responses=docs.responses(docs.REQUEST_ACTION, 404, 409),
             summary="record the answer to a request: publishes RequestCompleted")
def complete_request(request: Request, request_id: RequestId, body: CompleteBody,
                     caller: Reader) -> Response:
    return document(desk(request, caller).complete_request(request_id, body.outcome,
                                                           body.reason))

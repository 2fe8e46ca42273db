"""Questions and actions about one subject (http.md): the compliance desk, one call each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from events.catalogue import load_catalogue
from registre.services.audit import purposes
from registre.services.tokens import Caller
from registre.web import documents as docs
from registre.web.auth import require
from registre.web.routes.common import Case, Instant, desk, document, instant, subject_id

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])
Reader = Annotated[Caller, Depends(require("compliance"))]
Subject = Annotated[str, Depends(subject_id)]
_named = load_catalogue().named_types


def _symbols(name: str) -> list[str]:
    return list(_named[f"registre.events.{name}"]["symbols"])


class HoldBody(BaseModel):
    """A legal hold to place (publishes LegalHoldPlaced)."""

    model_config = ConfigDict(extra="forbid")
    case_ref: str = Field(min_length=1, max_length=200, examples=["LIT-2026-014"])
    reason: str = Field(json_schema_extra={"enum": _symbols("HoldReason")})
    categories: list[str] | None = Field(
        default=None, description="categories held (default: all)",
        json_schema_extra={"items": {"type": "string", "enum": _symbols("Category")}})


class ErasureBody(BaseModel):
    """Who asked for the erasure (default: the data subject)."""

    model_config = ConfigDict(extra="forbid")
    requested_by: str = Field(default="subject",
                              json_schema_extra={"enum": _symbols("RequestedBy")})


@router.get("/{subject_id}", responses=docs.responses(docs.VIEW, 404),
            summary="the customer view (as `registre view --json`); recorded in the access log")
def view(request: Request, subject: Subject, case: Case, caller: Reader) -> Response:
    return document(desk(request, caller).view(subject, case))


@router.get("/{subject_id}/timeline", responses=docs.responses(docs.TIMELINE, 404),
            summary="every event, decrypted where its key exists, else marked destroyed")
def timeline(request: Request, subject: Subject, case: Case, caller: Reader) -> Response:
    return document(desk(request, caller).timeline(subject, case))


@router.get("/{subject_id}/consent", responses=docs.responses(docs.CONSENT, 404),
            summary="consent for a purpose at an instant (as `registre audit consent --json`)")
def consent(request: Request, subject: Subject, caller: Reader, at: Instant,
            purpose: Annotated[str, Query(json_schema_extra={"enum": list(purposes())})]
            ) -> Response:
    return document(desk(request, caller).consent(subject, purpose, instant(at, "at")))


@router.get("/{subject_id}/disclosures", responses=docs.responses(docs.DISCLOSURES, 404, 410),
            summary="who received the data (as `registre audit disclosures --json`)")
def disclosures(request: Request, subject: Subject, caller: Reader) -> Response:
    return document(desk(request, caller).disclosures(subject))


@router.get("/{subject_id}/erasure", responses=docs.responses(docs.ERASURE, 404),
            summary="what was destroyed, what is kept (as `registre audit erasure --json`)")
def erasure(request: Request, subject: Subject, caller: Reader) -> Response:
    return document(desk(request, caller).erasure(subject))


@router.get("/{subject_id}/as-of", responses=docs.responses(docs.AS_OF, 404),
            summary="the view as it stood at an instant (as `registre audit as-of --json`)")
def as_of(request: Request, subject: Subject, caller: Reader, at: Instant,
          case: Case) -> Response:
    return document(desk(request, caller).as_of(subject, instant(at, "at"), case))


@router.get("/{subject_id}/export", responses=docs.responses(docs.EXPORT, 404),
            summary="the art. 15/20 document (as `registre export --json`)")
def export(request: Request, subject: Subject, case: Case, caller: Reader) -> Response:
    return document(desk(request, caller).export(subject, case))


@router.post("/{subject_id}/holds", responses=docs.responses(docs.ACTION),
             summary="place a legal hold: publishes LegalHoldPlaced")
def place_hold(request: Request, subject: Subject, body: HoldBody,
               caller: Reader) -> Response:
    return document(desk(request, caller).place_hold(subject, body.case_ref, body.reason,
                                                     body.categories))


@router.delete("/{subject_id}/holds/{case_ref}", responses=docs.responses(docs.ACTION),
               summary="release a legal hold: publishes LegalHoldReleased")
def release_hold(request: Request, subject: Subject,
                 case_ref: Annotated[str, Path(min_length=1, max_length=200)],
                 caller: Reader) -> Response:
    return document(desk(request, caller).release_hold(subject, case_ref))


@router.post("/{subject_id}/erasure", responses=docs.responses(docs.ACTION),
             summary="request erasure (art. 17): publishes ErasureRequested")
def request_erasure(request: Request, subject: Subject, caller: Reader,
                    body: ErasureBody | None = None) -> Response:
    return document(desk(request, caller).request_erasure(
        subject, (body or ErasureBody()).requested_by))



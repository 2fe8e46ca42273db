"""What the routes share: the desk for the caller, parameters checked without echoing values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.responses import Response

from events.validation import InvalidEvent, check_format
from registre.output import to_json
from registre.services.audit import parse_at
from registre.services.compliance import Compliance
from registre.services.tokens import Caller
from registre.web.errors import ApiError

SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def document(answer: Any) -> Response:
    """The answer as the JSON text the CLI's ``--json`` prints (`registre.output.to_json`)."""
    return Response(to_json(answer), media_type="application/json")


def desk(request: Request, caller: Caller) -> Compliance:
    """The compliance desk, reading as the token's name (recorded in the access log)."""
    return Compliance(request.app.state.web.context, caller.name)


def subject_id(subject_id: Annotated[str, Path(
        pattern=SUBJECT_PATTERN, description="pseudonymous subject id",
        examples=["acc-000042"])]) -> str:
    """The path's subject id; refused (naming the field only) if it is an email or an IP."""
    try:
        check_format("subject_id", subject_id, "subject_id")
    except InvalidEvent as exc:
        raise ApiError(422, str(exc)) from None
    return subject_id


def instant(text: str, name: str) -> datetime:
    return parse_at(text, name)


Case = Annotated[str, Query(
    min_length=1, max_length=200, pattern=r"\S",
    description="case reference: the read is written to the access log, under the token's "
                "name, before anything is decrypted", examples=["CASE-2026-17"])]
Instant = Annotated[str, Query(description="RFC 3339 instant with an offset",
                               examples=["2026-03-03T15:00:00+01:00"])]

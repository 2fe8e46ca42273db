"""`POST /v1/events`: one event or ``{"events": [...]}``, through `Publisher.publish_many`.

The one publishing code path: validation, sealing, Avro and the broker's acknowledgement are
the publisher's, so a 200 means what `registre publish` and the Python API mean (every accepted
event acknowledged by the broker with ``acks=all``). Each rejected item is named by its index
with the same one-line error as `registre publish` gives for that line; 200 even when some are
rejected. The body is parsed off the event loop; its size is capped by `middleware.BodyLimit`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from registre.services.tokens import Caller
from registre.web import documents as docs
from registre.web.auth import require
from registre.web.context import WebContext
from registre.web.errors import ApiError
from registre.web.routes.common import document

router = APIRouter(prefix="/v1", tags=["events"])
MAX_BATCH = 10_000
BODY_LIMIT = 8 << 20


def items_of(body: bytes) -> list[Any]:
    """The events of a body: one event, or the list of a batch; ApiError 422 otherwise."""
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(422, "body: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"body: not JSON ({exc.msg} at line {exc.lineno} column "
                            f"{exc.colno})") from None
    except (ValueError, RecursionError):
        raise ApiError(422, "body: not JSON (a number too long or nested too deeply)") from None
    if not isinstance(doc, dict):
        raise ApiError(422, "body: expected one event (an object) or {\"events\": [...]}")
    if "events" not in doc:
        return [doc]
    if set(doc) != {"events"}:
        raise ApiError(422, "body: a batch is {\"events\": [...]} and nothing else")
    items = doc["events"]
    if not isinstance(items, list):
        raise ApiError(422, "events: expected a list")
    if not items or len(items) > MAX_BATCH:
        raise ApiError(422, f"events: expected 1 to {MAX_BATCH} events")
    return items


def publish(context: WebContext, body: bytes) -> dict[str, Any]:
    """Parse, then validate, seal and publish with the shared publisher."""
    report = context.publish_many(items_of(body))
    # `redacted` (indices of events stored redacted, subject erased) comes with the publisher
    # that reports it; before that there is none to report
    return {"published": report.published,
            "rejected": [{"index": i, "error": e} for i, e in report.rejected],
            "redacted": list(getattr(report, "redacted", []))}


@router.post("/events", responses=docs.responses(docs.PUBLISHED),
             summary="publish one event or a batch",
             openapi_extra={"requestBody": {"$ref": "#/components/requestBodies/Events"}})
async def post_events(request: Request,
                      caller: Annotated[Caller, Depends(require("publish"))]) -> Response:
    body = await request.body()
    return document(await run_in_threadpool(publish, request.app.state.web.context, body))

"""The OpenAPI side of the answers: response schemas and the error responses of each route.

The documents themselves are the compliance desk's (the CLI's ``--json``); these schemas state
their top-level shape (required keys, open to more), so that a client can rely on them and a
schema checker can hold the service to them.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
OBJECT: Schema = {"type": "object"}
NULLABLE_OBJECT: Schema = {"type": ["object", "null"]}
TEXT: Schema = {"type": "string"}
INSTANT: Schema = {"type": "string", "description": "RFC 3339, UTC"}


def obj(*required: str, **properties: Schema) -> Schema:
    """An object with these required keys (any type unless given), open to more."""
    props = {name: properties.get(name, {}) for name in required}
    props.update(properties)
    return {"type": "object", "required": list(required), "properties": props}


ERROR = obj("error", error=TEXT)
PUBLISHED = obj(
    "published", "rejected", "redacted",
    published={"type": "integer", "minimum": 0},
    rejected={"type": "array", "items": obj("index", "error", index={"type": "integer"},
                                            error=TEXT)},
    redacted={"type": "array", "items": {"type": "integer"}})
VIEW = obj("subject_id", "status", "identity", "contact", "last_connection", "consents",
           "authorisations", subject_id=TEXT,
           status={"type": "string", "enum": ["active", "deleted", "erased"]},
           identity=NULLABLE_OBJECT, contact=NULLABLE_OBJECT, last_connection=NULLABLE_OBJECT,
           consents=OBJECT, authorisations={"type": "array"})
TIMELINE = obj("subject_id", "case_ref", "access_id", "events", subject_id=TEXT,
               case_ref=TEXT, access_id={"type": "integer"},
               events={"type": "array", "items": obj(
                   "event_id", "type", "occurred_at", "source", "data", "partition", "offset",
                   data=OBJECT)})
CONSENT = obj("subject_id", "purpose", "at", "status", "event_id", "notice_version",
              "mechanism", status={"type": "string", "enum": [
                  "granted", "refused", "withdrawn", "expired", "none"]})
DISCLOSURES = {"type": "array", "items": obj(
    "recipient", "categories", "basis", "occurred_at", "authorised", "event_id",
    authorised={"type": "boolean"})}
ERASURE = obj("subject_id", "status", "destroyed", "retained", "holds",
              destroyed={"type": "array"}, retained={"type": "array"}, holds={"type": "array"})
AS_OF = obj("subject_id", "at", "case_ref", "access_id", "existed", "view",
            existed={"type": "boolean"}, view=NULLABLE_OBJECT)
EXPORT = obj("format", "subject_id", "generated_at", "access_id", "personal_data", "events")
ACTION = obj("published", "event_id", "subject_id", published=TEXT, event_id=TEXT,
             subject_id=TEXT)
LOOKUP = obj("subjects", subjects={"type": "array", "items": TEXT})
SCHEDULE = obj("now", "days", "due", "holds", due={"type": "array"}, holds={"type": "array"})
VERIFY = obj("ok", "first_bad", "reason", "records_checked", ok={"type": "boolean"},
             first_bad=NULLABLE_OBJECT, reason=TEXT)
REQUEST = obj("request_id", "subject_id", "kind", "channel", "identity_verified", "received_at",
              "deadline", "status", "late", "extension", "completed_at", "outcome",
              request_id=TEXT, subject_id=TEXT, received_at=INSTANT, deadline=INSTANT,
              status={"type": "string", "enum": ["open", "overdue", "done"]},
              late={"type": "boolean"}, extension=NULLABLE_OBJECT)
REQUEST_ACTION = {**REQUEST, "required": ["published", "event_id", *REQUEST["required"]],
                  "properties": {"published": TEXT, "event_id": TEXT,
                                 **REQUEST["properties"]}}
REQUESTS = obj("now", "status", "subject_id", "counts", "requests", now=INSTANT,
               counts=obj("open", "overdue", "done"), requests={"type": "array",
                                                               "items": REQUEST})
HEALTH = obj("status", status={"const": "ok"})
READINESS = obj("ready", "checks", "error", ready={"type": "boolean"}, checks=OBJECT,
                error={"type": ["string", "null"]})

WHY = {401: "no valid bearer token", 403: "the token lacks the route's scope",
       404: "unknown subject or request",
       409: "refused by the rules (a second or late extension, a request already completed)",
       410: "records past their retention, no longer answered",
       413: "body over the route's limit", 422: "not what the route takes",
       503: "broker or database unavailable"}


def responses(ok: Schema, *errors: int, description: str = "the answer") -> dict[int, Any]:
    """FastAPI ``responses=`` for a route: its answer and its documented errors."""
    out: dict[int, Any] = {200: {"description": description,
                                 "content": {"application/json": {"schema": ok}}}}
    for status in sorted({401, 403, 413, 422, 503, *errors}):
        out[status] = {"description": WHY.get(status, "error"),
                       "content": {"application/json": {"schema": ERROR}}}
    return out

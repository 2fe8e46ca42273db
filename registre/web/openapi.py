"""The OpenAPI 3.1 document of the web service, with the events generated from `schemas/`.

FastAPI writes the routes; this adds one component per publishable event type
(`registre.web.schemas.event_schema`, from the `.avsc` files), the batch, and the request
body of ``POST /v1/events`` (``oneOf`` the events or the batch) with every example of
``schemas/examples/*.valid.jsonl``. Built once, on first request of ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from events.catalogue import Catalogue, load_catalogue
from registre.web.schemas import event_schema, examples, publishable

DESCRIPTION = """\
Website services publish events; compliance staff and scripts ask the ledger's questions.
Every answer is the document the `registre` command prints with `--json`; every error is
`{"error": "one line"}`. Authenticate with `Authorization: Bearer <token>` (a token from
`registre tokens create NAME --scope publish|compliance|admin`). A read that decrypts personal
data needs `case=REF` and is written to the access log under the token's name first.
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def event_components(catalogue: Catalogue, max_batch: int) -> dict[str, Any]:
    """The schemas and the request body of ``POST /v1/events``."""
    types = publishable(catalogue)
    schemas = {f"{t.name}Event": event_schema(t, catalogue) for t in types}
    one_event = {"oneOf": [_ref(f"{t.name}Event") for t in types]}
    schemas["Event"] = one_event
    schemas["EventBatch"] = {
        "type": "object", "required": ["events"], "additionalProperties": False,
        "properties": {"events": {"type": "array", "items": _ref("Event"), "minItems": 1,
                                  "maxItems": max_batch}}}
    named = {f"{t.name}-{i}": {"summary": f"{t.name} (schemas/examples)", "value": ex}
             for t in types for i, ex in enumerate(examples(t.name), start=1)}
    first = [ex for t in types for ex in examples(t.name)[:1]]
    named["batch"] = {"summary": "a batch", "value": {"events": first[:3]}}
    body = {"required": True, "description": "one event (domain.md's envelope) or a batch",
            "content": {"application/json": {
                "schema": {"oneOf": [_ref("Event"), _ref("EventBatch")]},
                "examples": named}}}
    return {"schemas": schemas, "requestBodies": {"Events": body}}


def install(app: FastAPI, max_batch: int) -> None:
    """Serve the document with the generated event schemas (built on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=DESCRIPTION,
                              routes=app.routes)
            components = doc.setdefault("components", {})
            extra = event_components(load_catalogue(), max_batch)
            components.setdefault("schemas", {}).update(extra["schemas"])
            components["requestBodies"] = extra["requestBodies"]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

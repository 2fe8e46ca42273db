"""The FastAPI application of the web service, built from a `Registre` (the composition root).

`create_app` wires the routers, the error handlers, the middleware and the OpenAPI document;
what the process holds (the desk's context with its one publisher, the token verifier, the
readiness probe) lives in ``app.state.web`` and the publisher is closed at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from registre.bootstrap import Registre
from registre.services.readiness import Readiness
from registre.services.tokens import TokenVerifier
from registre.web import console, errors, openapi
from registre.web.context import WebContext
from registre.web.middleware import BodyLimit, Guard, RequestLog
from registre.web.routes import events, health, ledger, requests, subjects

SMALL_BODY = 64 << 10  # every route but publishing takes a small body, if any


@dataclass
class WebState:
    context: WebContext
    verifier: TokenVerifier
    readiness: Readiness


def body_limit(path: str) -> int:
    """Bytes of body a route takes: 8 MiB to publish, 64 KiB elsewhere."""
    return events.BODY_LIMIT if path.rstrip("/") == "/v1/events" else SMALL_BODY


def create_app(registre: Registre) -> FastAPI:
    """The web service for the broker, database and master key of ``registre``."""
    context = WebContext(registre)
    state = WebState(context, TokenVerifier(lambda: context.connect("compliance")),
                     Readiness(registre.kafka, registre.url("compliance")))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context.close()

    app = FastAPI(title="registre", version="1", lifespan=lifespan,
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.web = state
    for router in (health.router, events.router, subjects.router, ledger.router,
                   requests.router):
        app.include_router(router)
    console.install(app)
    errors.install(app)
    openapi.install(app, events.MAX_BATCH)
    app.add_middleware(Guard)  # innermost of the three: added first
    app.add_middleware(BodyLimit, limit_for=body_limit)
    app.add_middleware(RequestLog)
    return app

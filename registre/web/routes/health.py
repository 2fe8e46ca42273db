"""`/healthz` (the process answers) and `/readyz` (it can do its job now): no credentials,
no personal data, counts only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from registre.output import to_json
from registre.web import documents as docs

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="the process is up",
            responses={200: {"description": "up", "content": {"application/json": {
                "schema": docs.HEALTH}}}})
async def healthz() -> Response:
    return Response(to_json({"status": "ok"}), media_type="application/json")


@router.get("/readyz", summary="broker and database reachable, processors alive and not stuck",
            responses={status: {"description": text, "content": {"application/json": {
                "schema": docs.READINESS}}} for status, text in ((200, "ready"),
                                                                  (503, "not ready"))})
async def readyz(request: Request) -> Response:
    answer = await run_in_threadpool(request.app.state.web.readiness.check)
    return Response(to_json(answer), status_code=200 if answer["ready"] else 503,
                    media_type="application/json")

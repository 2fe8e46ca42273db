"""Bearer tokens on each route: 401 without a valid token, 403 with one that lacks the scope.

The caller (the token's name and scopes) is put on the request's state, so the request log and
the access log name the token, never a name the client declares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registre.services.tokens import BadToken, Caller
from registre.web.errors import ApiError

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="`Authorization: Bearer rgt_...`, from `registre tokens create`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require(scope: str) -> Callable[..., Caller]:
    """A dependency giving the caller of a valid token that has ``scope``."""

    def caller(request: Request, credentials: Credentials) -> Caller:
        if credentials is None:
            raise ApiError(401, "a bearer token is required (Authorization: Bearer rgt_...)",
                           CHALLENGE)
        try:
            found = request.app.state.web.verifier.verify(credentials.credentials)
        except BadToken as exc:
            raise ApiError(401, f"token refused: {exc}", CHALLENGE) from None
        request.state.caller = found
        if scope not in found.scopes:
            raise ApiError(403, f"token {found.name!r} lacks the {scope!r} scope")
        return found

    caller.__name__ = f"require_{scope}"
    return caller

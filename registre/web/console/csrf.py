"""Forms that only the console itself can submit, and where a login may send the browser.

Pure helpers, no I/O:

* every form of a logged-in person carries ``csrf``: an HMAC of their session token (which
  only their browser holds, in an HttpOnly cookie), so one token per session, nothing stored,
  and a page of another site can neither read nor compute it; every POST is checked;
* the login form, before any session exists, carries a random token that must equal the one
  in a short-lived cookie of the login page (a double submit);
* a POST whose ``Origin`` header names another site is refused outright;
* after logging in, ``next`` may only lead to a page of the console itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

LABEL = b"registre-console/csrf/v1"
HOME = "/console/"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def csrf_token(session_token: str) -> str:
    """The CSRF token of the forms of one session."""
    return _b64(hmac.new(session_token.encode(), LABEL, hashlib.sha256).digest())


def csrf_ok(session_token: str | None, given: str | None) -> bool:
    """Whether a form's ``csrf`` field is the one of this session."""
    if not session_token or not given:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), given.encode("utf-8",
                                                                                 "replace"))


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def login_ok(cookie: str | None, given: str | None) -> bool:
    """Whether the login form's token is the one its page set in the login cookie."""
    if not cookie or not given or len(given) > 200:
        return False
    return hmac.compare_digest(cookie.encode("utf-8", "replace"), given.encode("utf-8",
                                                                              "replace"))


def same_origin(origin: str | None, scheme: str, netloc: str) -> bool:
    """A POST's ``Origin`` header is absent (older clients) or this site's own."""
    if origin is None:
        return True
    return origin.rstrip("/") == f"{scheme}://{netloc}"


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of the console on this site, else its home."""
    if not value or len(value) > 2000:
        return HOME
    if any(c in value for c in "\\\r\n\t") or any(ord(c) < 32 for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return HOME
    if not (parts.path == "/console" or parts.path.startswith("/console/")):
        return HOME
    if ".." in parts.path.split("/"):
        return HOME
    return value

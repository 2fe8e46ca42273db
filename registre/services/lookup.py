"""Question 9 of domain.md: which subjects hold this email address or phone number.

Answered from the keyed lookup index (`projections.lookup`): the value given is normalised and
hashed with the index's key, and only the hash meets the database. The answer holds subject
ids only; an error names the field, never the value.
"""

from __future__ import annotations

from typing import Any

import psycopg

from processors.rules.lookup import NotLookupValue, normalise
from projections.lookup import find
from registre.services.audit import BadQuestion


def lookup(conn: psycopg.Connection, master_key: bytes, email: str | None = None,
           phone: str | None = None) -> dict[str, Any]:
    """``{"subjects": [...]}``: the subject ids whose current email (or phone) is that one."""
    given = [(k, v) for k, v in (("email", email), ("phone", phone)) if v is not None]
    if len(given) != 1:
        raise BadQuestion("give one of email or phone")
    kind, value = given[0]
    if len(value) > 1000:
        raise BadQuestion(f"{kind}: longer than 1000 characters")
    try:
        normalise(kind, value)
    except NotLookupValue as exc:
        raise BadQuestion(str(exc)) from None
    return {"subjects": find(conn, master_key, kind, value)}

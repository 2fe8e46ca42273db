"""Login roles for the group roles of ``migrations/007_roles.sql``, and their connection URLs.

The migrations create four NOLOGIN groups (``registre_processor``, ``registre_publisher``,
``registre_compliance``, ``registre_analyst``). A person or service connects with a LOGIN role
that is a member of exactly one of them. ``ensure_login`` is what the embedded runtime calls
for each: it creates (or repairs) the login and returns its URL.

Roles are cluster-wide; the memberships are too. Every call is idempotent and safe to race.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

PROCESSOR = "registre_processor"
PUBLISHER = "registre_publisher"
COMPLIANCE = "registre_compliance"
ANALYST = "registre_analyst"
ADMIN = "registre_admin"
GROUPS = (PROCESSOR, PUBLISHER, COMPLIANCE, ANALYST, ADMIN)
ANALYST_LOGIN = "registre_analyst_login"

# Attributes a login role of ours must have (pg_roles column -> wanted value, ALTER keyword).
_ATTRIBUTES = {
    "rolsuper": (False, "NOSUPERUSER"),
    "rolcreatedb": (False, "NOCREATEDB"),
    "rolcreaterole": (False, "NOCREATEROLE"),
    "rolreplication": (False, "NOREPLICATION"),
    "rolbypassrls": (False, "NOBYPASSRLS"),
    "rolinherit": (True, "INHERIT"),
    "rolcanlogin": (True, "LOGIN"),
}


class RolesMissing(LookupError):
    """The group roles do not exist: the migrations were not applied."""


def login_url(database_url: str, user: str, password: str | None = None) -> str:
    """``database_url`` (URL or key=value form) with another user (and password, if given)."""
    if "://" not in database_url:
        return make_conninfo(database_url, user=user, password=password)
    parts = urlsplit(database_url)
    hostport = parts.netloc.rpartition("@")[2]
    userinfo = quote(user, safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    query = "&".join(p for p in parts.query.split("&")
                     if p and p.split("=", 1)[0] not in ("user", "password"))
    return urlunsplit((parts.scheme, f"{userinfo}@{hostport}", parts.path, query,
                       parts.fragment))


def _create_role(conn: psycopg.Connection, login: str, group: str) -> None:
    try:
        with conn.transaction():
            conn.execute(sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                " NOBYPASSRLS INHERIT IN ROLE {}"
            ).format(sql.Identifier(login), sql.Identifier(group)))
    except (errors.DuplicateObject, errors.UniqueViolation):
        pass  # created meanwhile by another caller


def _other_groups(conn: psycopg.Connection, login: str, group: str) -> list[tuple[str]]:
    return conn.execute(
        "SELECT DISTINCT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s AND g.rolname <> %s",
        (login, group),
    ).fetchall()


def ensure_login(database_url: str, group: str, login: str,
                 password: str | None = None) -> str:
    """Make ``login`` a LOGIN role member of ``group`` and of no other role; return its URL.

    An existing role with more powers (superuser, CREATEROLE, BYPASSRLS...) or other
    memberships is brought back to exactly that. Needs a superuser or a CREATEROLE role with
    ADMIN on ``group``. Raises RolesMissing when ``group`` does not exist.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown group role {group!r} (known: {', '.join(GROUPS)})")
    ident = sql.Identifier(login)
    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,)).fetchone() is None:
            raise RolesMissing(f"role {group} does not exist: apply the migrations first")
        row = conn.execute(
            "SELECT " + ", ".join(_ATTRIBUTES) + " FROM pg_roles WHERE rolname = %s", (login,)
        ).fetchone()
        if row is None:
            _create_role(conn, login, group)
        else:
            wrong = [kw for (want, kw), have in zip(_ATTRIBUTES.values(), row, strict=True)
                     if have != want]
            if wrong:
                conn.execute(sql.SQL("ALTER ROLE {} " + " ".join(wrong)).format(ident))
        for (other,) in _other_groups(conn, login, group):
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(other), ident))
        left = _other_groups(conn, login, group)
        if left:  # granted by another grantor: never hand out a URL with more rights
            raise PermissionError(f"{login} is still a member of {', '.join(r for r, in left)}:"
                                  " revoke it as the role that granted it")
        modern = conn.info.server_version >= 160000  # per-membership INHERIT option
        member = conn.execute(
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s AND g.rolname = %s"
            + (" AND m.inherit_option" if modern else ""),
            (login, group),
        ).fetchone()
        if member is None:
            conn.execute(sql.SQL("GRANT {} TO {}" + (" WITH INHERIT TRUE" if modern else ""))
                         .format(sql.Identifier(group), ident))
        if password is not None:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
        if group == ANALYST:
            # Analysts query unqualified view names and never write.
            conn.execute(sql.SQL("ALTER ROLE {} SET search_path = analytics").format(ident))
            conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
                         .format(ident))
    return login_url(database_url, login, password)


def ensure_analyst_login(database_url: str, login: str = ANALYST_LOGIN,
                         password: str | None = None) -> str:
    """Create (idempotently) the analyst's LOGIN role, member of registre_analyst only.

    Returns ``database_url`` with that user (and ``password`` if given; the embedded default
    uses trust authentication over its unix socket, so none is needed there).
    """
    return ensure_login(database_url, ANALYST, login, password)

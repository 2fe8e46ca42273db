"""The compliance console (http.md, "Console"): server-rendered pages under ``/console``.

Another view of the compliance desk's documents: every page is built from what
`registre.services.compliance.Compliance` returns for the logged-in person (the API's
documents; ``?format=json`` gives them as they are), and every action publishes through the
same desk method as the API. Jinja2 templates and one stylesheet (package data), no
JavaScript, no build step.

* `routes`: login, logout, search; `subject`: the subject page and its actions; `pages`:
  requests, schedule, integrity;
* `session`: who is logged in (sessions of `registre.services.staff`), cookies, CSRF checks;
  `csrf`: the pure token helpers; `views`: templates, JSON twins, error pages;
* `sentences` and `dates`: the timeline as sentences, instants in UTC and Paris time (pure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from registre.services.staff import Throttle
from registre.web.console import pages, routes, subject


@dataclass
class ConsoleState:
    """What one web process keeps for the console: the login throttles (failures per name,
    and more per address), the last verification (in memory: a restart forgets them)."""

    names: Throttle = field(default_factory=lambda: Throttle(limit=5, window=900))
    addresses: Throttle = field(default_factory=lambda: Throttle(limit=50, window=900))
    last_verification: dict[str, Any] | None = None


def install(app: FastAPI) -> None:
    """Add the console's pages and its stylesheet to the web service."""
    app.state.console = ConsoleState()
    static = resources.files("registre.web.console").joinpath("static")
    app.mount("/console/static", StaticFiles(directory=str(static)), name="console-static")
    for module in (routes, subject, pages):  # pages last: it ends with the console's 404
        app.include_router(module.router)

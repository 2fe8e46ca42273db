"""Serving the web service with uvicorn, in the foreground (`registre serve`, and the child
process `registre run` starts: ``python -m registre.web``).

uvicorn's access log is off: it would write each request's query string, which may hold an
email or a phone number. `middleware.RequestLog` writes one line per request instead, with
the route template and no value. SIGINT and SIGTERM stop it gracefully (uvicorn's handlers);
the publisher is flushed and closed at shutdown.
"""

from __future__ import annotations

import sys

import uvicorn

from registre.bootstrap import Registre
from registre.settings import Settings, check_bindable
from registre.web.app import create_app


def serve(settings: Settings, bind: tuple[str, int] | None = None) -> int:
    """Run the web service until SIGINT or SIGTERM; the exit code."""
    host, port = bind or settings.http
    registre = Registre(settings)
    registre.url("compliance")  # fail now, with one line, when nothing runs
    registre.master_key  # noqa: B018 - the web service holds the keys: it needs the master key
    check_bindable(host, port)
    config = uvicorn.Config(create_app(registre), host=host, port=port, log_config=None,
                            access_log=False, server_header=False, lifespan="on",
                            timeout_graceful_shutdown=10)
    print(f"registre serves http://{host}:{port} (kafka {registre.kafka}); Ctrl-C stops",
          file=sys.stderr, flush=True)
    uvicorn.Server(config).run()
    return 0

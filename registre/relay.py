"""`python -m registre.relay`: the journal's relay (what `registre run` starts on the
embedded default). Its settings come from the environment, like every command's."""

from __future__ import annotations

import signal
import sys
import threading


def main() -> int:
    from registre.logs import configure
    from registre.services.relay import run
    from registre.settings import Settings

    settings = Settings.from_env()
    configure(settings.env.get("REGISTRE_LOG_LEVEL", "info"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(settings.kafka_servers(), settings.url_for("processor"), stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())

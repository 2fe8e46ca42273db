"""`python -m registre.worker`: start one processor worker (what `registre run` spawns)."""

from __future__ import annotations

import os
import sys
import warnings

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def main() -> int:
    import faust

    from processors.agents import build
    from registre.logs import configure

    configure(os.environ.get("REGISTRE_LOG_LEVEL", "info"))
    app = build()
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m registre.worker`: one processor worker (what `registre run` spawns, and what a
production node runs). Its settings come from the environment, like every command's."""

from __future__ import annotations

import sys
import warnings

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def main() -> int:
    import faust

    from processors.agents import build_app
    from processors.heap import tune_gc
    from registre.bootstrap import Registre
    from registre.logs import configure
    from registre.settings import Settings

    settings = Settings.from_env()
    configure(settings.env.get("REGISTRE_LOG_LEVEL", "info"))
    registre = Registre(settings)
    config = registre.worker_config()
    app = build_app(config, registre.ledger(config.worker_id))
    tune_gc()
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m registre.web`: the web service alone, configured by the environment (what
`registre run` starts as a child process, on REGISTRE_HTTP)."""

from __future__ import annotations

import sys
import warnings

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def main() -> int:
    from events.crypto import MasterKeyError
    from registre.errors import UserError
    from registre.logs import configure
    from registre.settings import NotRunning, SettingError, Settings
    from registre.web.server import serve

    settings = Settings.from_env()
    configure(settings.env.get("REGISTRE_LOG_LEVEL", "info"))
    try:
        return serve(settings)
    except (UserError, NotRunning, SettingError, MasterKeyError) as exc:
        print(f"registre web: {exc}", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - one line, by type: a value never reaches a log
        print(f"registre web: unexpected error ({type(exc).__name__})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

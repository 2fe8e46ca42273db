"""The one error type that means "tell the user this line": a mistake or a state they can fix.

Services and entry points raise it (or errors of their own that the command line knows); the
command line prints its message on one line and exits with ``code``. No traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake or a state the user can fix; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code

"""Ctrl-C for the processes the tests start, whatever shell started the tests."""

from __future__ import annotations

import signal


def let_ctrl_c_through() -> None:
    """A shell without job control (`nohup ... &`, some CI runners) starts us with SIGINT
    ignored, and every process we spawn would inherit that: the tests that press Ctrl-C on
    `registre` would see it ignored. A handler of our own is reset to the default on exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

"""The projections written beside the customer view, in the same batch transaction.

Each entry is a hook ``async (cursor, outcome) -> None`` and the SQL that empties its tables
for `registre rebuild`. Hooks only see applied events, in log order.
"""

from __future__ import annotations

from collections.abc import Sequence

from projections.writer import Hook


def projection_hooks(master_key: bytes | None = None) -> Sequence[tuple[Hook, Sequence[str]]]:
    """(hook, reset statements) of every secondary projection.

    The analytics projection needs the master key (it reads the country of a connection);
    without one it is left out.
    """
    from projections import analytics, consent_history
    from projections.erasure_store import RECORD_RESET_SQL, record_erasure_facts

    hooks: list[tuple[Hook, Sequence[str]]] = [
        (record_erasure_facts, RECORD_RESET_SQL),
        (consent_history.hook, consent_history.RESET_SQL),
    ]
    if master_key is not None:
        hooks.append((analytics.make_hook(master_key), analytics.RESET_SQL))
    return hooks

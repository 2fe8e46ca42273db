"""The fault suite, short: every scenario of `tests/faults.py` with a few hundred events, each
checked for 0 lost and 0 duplicated (`python -m tests.faults` runs them at full size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.faults]
EVENTS, PACE = 500, 3.0


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nothing_acknowledged_is_lost_or_applied_twice(name: str, tmp_path: Path) -> None:
    result = SCENARIOS[name](tmp_path / "home", EVENTS, PACE)
    assert result["acknowledged"] >= EVENTS
    assert (result["lost"], result["duplicated"]) == (0, 0), result

"""The one check of a case reference (`projections.access_log.checked_case`): every restricted
read, from the CLI, the HTTP API or the console, goes through it before anything is logged."""

from __future__ import annotations

import pytest

from projections.access_log import MissingCaseReference, checked_case


def test_a_case_reference_is_stripped_of_surrounding_whitespace():
    assert checked_case("  CASE-2026-17\n") == "CASE-2026-17"
    assert checked_case("Litige n° 14 — Tribunal de Lyon") == "Litige n° 14 — Tribunal de Lyon"


@pytest.mark.parametrize("missing", [None, "", "   ", "\n\t"])
def test_a_missing_case_reference_is_refused(missing):
    with pytest.raises(MissingCaseReference, match="a case reference is required"):
        checked_case(missing)


@pytest.mark.parametrize("bad", ["CASE\x00-1", "CASE\x1b[31m", "CASE\x85-1", "A\tB"])
def test_a_case_reference_with_a_control_character_is_refused_without_echoing_it(bad):
    with pytest.raises(MissingCaseReference) as caught:
        checked_case(bad)
    assert str(caught.value) == "case reference: control characters are not allowed"

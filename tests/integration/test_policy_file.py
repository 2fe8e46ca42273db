"""One policy source: with REGISTRE_POLICY_FILE giving consents 6 months of validity, the view,
`registre audit consent`, the retention sweep (ConsentExpired) and the export agree, for a
choice 7 months old (expired) and one 5 months old (still valid); under the default policy
the same 7-month-old choice is still granted everywhere."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import workers as w

from processors.rules.timeutil import add_months
from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration
OLD, RECENT = "acc-policy-old", "acc-policy-recent"


def _story(now: datetime) -> list[dict]:
    events = []
    for subject, months in ((OLD, 7), (RECENT, 5)):
        at = add_months(now, -months).isoformat()
        events.append(w.event("AccountCreated", subject, at, {
            "gender": "other", "last_name": "Politique", "first_name": "Six",
            "email": f"{subject}@exemple-canari.fr", "postal_address": {
                "line1": "1 rue du Registre", "postal_code": "75011", "city": "Paris",
                "country": "FR"}, "over_15": True, "notice_version": "2026-01"}))
        events.append(w.event("ConsentGiven", subject, at, {
            "purposes": ["marketing"], "notice_version": "2026-01", "mechanism": "banner_ok"}))
    return events


def _cli(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([REGISTRE, *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _answers(env: dict[str, str], subject: str, now: datetime) -> dict[str, str]:
    view = _cli(env, "view", subject, "--json")
    consent = _cli(env, "audit", "consent", subject, "--purpose", "marketing", "--at",
                   now.isoformat(), "--json")
    export = _cli(env, "export", subject, "--case", "POLICY-1", "--json")
    return {"view": view["consents"]["marketing"], "audit consent": consent["status"],
            "export": export["consents"]["marketing"]["status"]}


@pytest.mark.parametrize("months", [6, None])
def test_view_audit_sweep_and_export_read_the_same_policy(broker, database_url, master_key,
                                                          keystore, tmp_path: Path, months):
    policy = {}
    if months is not None:
        path = tmp_path / "policy.json"
        path.write_text(json.dumps({"format": 1,
                                    "durations": {"consent_validity_months": months}}))
        policy = {"REGISTRE_POLICY_FILE": str(path)}
    env = {**w.client_env(broker, database_url, master_key, tmp_path / "home"), **policy}
    now = datetime.now(UTC)
    w.publish(broker, keystore, _story(now))
    with w.Worker(broker, database_url, master_key, tmp_path / "home", extra_env=policy):
        w.wait_applied(broker, database_url)
        expired = "expired" if months == 6 else "granted"
        assert _answers(env, OLD, now) == dict.fromkeys(("view", "audit consent", "export"),
                                                        expired)
        assert _answers(env, RECENT, now) == dict.fromkeys(("view", "audit consent", "export"),
                                                           "granted")
        swept = _cli(env, "retention", "sweep", "--json")
        expected = [{"subject_id": OLD, "purposes": ["marketing"]}] if months == 6 else []
        assert swept["consents_expired"] == expected
        w.wait_applied(broker, database_url)
        # the ledger now holds the expiry (ConsentExpired), and every answer still agrees
        assert _answers(env, OLD, now)["view"] == expired
        assert _answers(env, OLD, now)["export"] == expired

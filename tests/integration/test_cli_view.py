"""`registre view SUBJECT`: a scripted story published to a real worker, then read back
through the command line, decrypted on read, as JSON and as text."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pytest
import workers as w

from tests.integration.workers import REGISTRE

pytestmark = pytest.mark.integration


def registre(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([REGISTRE, *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=w.ROOT)


def by_type(events, subject, kind):
    return [e for e in events if e["subject_id"] == subject and e["type"] == kind]


def test_view_from_the_command_line(broker, database_url, master_key, keystore, tmp_path):
    """One worker applies the story; every form of `registre view` is then checked."""
    events = w.story()
    with w.Worker(broker, database_url, master_key, tmp_path / "home") as worker:
        w.publish(broker, keystore, events)
        w.wait_applied(broker, database_url, workers=[worker])
    env = w.client_env(broker, database_url, master_key, tmp_path / "home")
    check_json(env, events)
    check_deleted_and_erased(env)
    check_text(env)
    check_unknown_subject(env)


def check_json(env, events):
    done = registre(env, "view", w.ACTIVE, "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    connection = by_type(events, w.ACTIVE, "ConnectionRecorded")[-1]
    given = by_type(events, w.ACTIVE, "ConsentGiven")[0]
    refused = by_type(events, w.ACTIVE, "ConsentRefused")[0]
    assert view["subject_id"] == w.ACTIVE
    assert view["status"] == "active"
    assert view["identity"] == w.IDENTITY
    assert view["contact"] == w.CONTACT  # the rectified email and the replaced address
    assert view["last_connection"] == {
        "at": datetime.fromisoformat(connection["occurred_at"]).astimezone(UTC)
        .isoformat().replace("+00:00", "Z"),
        "event_id": connection["event_id"], **w.CONNECTION}
    assert view["consents"] == {"optimisation": "granted", "personalised_ads": "withdrawn",
                                "marketing": "refused", "third_party_cookies": "expired"}
    details = view["consent_details"]
    assert details["optimisation"]["event_id"] == given["event_id"]
    assert details["optimisation"]["notice_version"] == "2026-02"
    assert details["optimisation"]["mechanism"] == "banner_ok"
    assert details["marketing"]["event_id"] == refused["event_id"]
    assert details["personalised_ads"]["mechanism"] == "settings_page"
    assert [(a["recipient"], a["categories"], a["purpose"]) for a in view["authorisations"]] == [
        (w.PARTNER, ["contact", "identity"], "service")]
    assert view["holds"] == ["LIT-2026-014"]
    assert view["documents"] == 1
    assert view["counts"]["disclosures"] == 2
    assert view["counts"]["unauthorised_disclosures"] == 1  # to OTHER after its revocation
    assert view["counts"]["connections"] == 2
    assert view["counts"]["events"] == len([e for e in events if e["subject_id"] == w.ACTIVE])


def check_deleted_and_erased(env):
    deleted = json.loads(registre(env, "view", w.DELETED, "--json").stdout)
    assert deleted["status"] == "deleted"
    assert deleted["identity"] is None and deleted["contact"] is None
    conn = deleted["last_connection"]
    assert conn["ip"] is None and conn["user_agent"] is None
    assert deleted["consents"] == {"marketing": "granted"}  # the record is kept as proof
    assert deleted["deleted_at"] is not None
    erased = json.loads(registre(env, "view", w.VISITOR, "--json").stdout)
    assert erased["status"] == "erased"
    assert erased["identity"] is None and erased["contact"] is None
    assert erased["last_connection"]["ip"] is None
    assert erased["last_connection"]["cookie_id"] is None


def check_text(env):
    done = registre(env, "view", w.ACTIVE)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"subject_id: {w.ACTIVE}"
    assert "status: active" in lines
    assert "identity:" in lines and "contact:" in lines
    for expected in ("  first_name: Zéphyrine", "  last_name: Canarivaux",
                     f"  email: {w.CONTACT['email']}", "    city: Villefranche-sur-Saône",
                     "  ip: 203.0.113.77", "  optimisation: granted",
                     "  third_party_cookies: expired", "  personalised_ads: withdrawn",
                     f"  - recipient: {w.PARTNER}"):
        assert expected in lines, expected
    assert not done.stdout.lstrip().startswith("{")
    assert "consent_details" not in done.stdout  # the JSON details stay out of the text form
    assert "\\u" not in done.stdout  # accents as they are


def check_unknown_subject(env):
    for args in (("view", "acc-999999"), ("view", "acc-999999", "--json")):
        done = registre(env, *args)
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done.stderr
        assert "acc-999999" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [("rebuild", "--workers", "0"), ("rebuild", "--memory-mb", "-5"),
                                  ("run", "--workers", "two")])
def test_a_count_that_is_not_a_whole_number_is_refused_in_one_line(args):
    done = subprocess.run([REGISTRE, *args], capture_output=True, text=True, timeout=60,
                          cwd=w.ROOT)
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"registre {args[0]}: error: argument {args[1]}:")
    assert repr(args[2]) in error and "Traceback" not in done.stderr

"""The retention policy as data: the documented defaults, policy files and their errors."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from processors.rules.policy import (
    DURATION_NAMES,
    POLICY_ENV,
    Policy,
    default_policy_text,
    load_policy,
    parse_policy,
    policy_from_env,
)


def write(tmp_path: Path, text: str, name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_domain_defaults() -> None:
    p = Policy()
    assert p.identity_contact_after_end_with_document_months == 60
    assert p.connection_location_months == 13
    assert p.consent_validity_months == 13
    assert p.sharing_records_after_end_months == 60
    # GDPR art. 12(3): one month after receipt, extendable once by up to two more
    assert p.request_response_months == 1
    assert p.request_extension_max_months == 2


def test_every_duration_is_known_by_name() -> None:
    assert DURATION_NAMES == (
        "identity_contact_after_end_with_document_months", "connection_location_months",
        "consent_validity_months", "sharing_records_after_end_months",
        "request_response_months", "request_extension_max_months")


def test_request_durations_can_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, '{"durations": {"request_extension_max_months": 0,'
                           ' "request_response_months": {"months": 2, "doc": "stricter law"}}}')
    assert load_policy(path) == Policy(request_response_months=2, request_extension_max_months=0)


def test_default_file_is_the_dataclass_defaults() -> None:
    assert load_policy(None) == Policy()


def test_default_file_documents_every_duration() -> None:
    doc = json.loads(default_policy_text())
    assert isinstance(doc["doc"], str) and "REGISTRE_POLICY_FILE" in doc["doc"]
    assert doc["format"] == 1
    assert set(doc["durations"]) == set(DURATION_NAMES) == {f.name for f in fields(Policy)}
    for name, entry in doc["durations"].items():
        assert set(entry) == {"months", "doc"}, name
        assert len(entry["doc"]) > 40, name
        assert entry["months"] == getattr(Policy(), name)


def test_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({
        "doc": "shorter connection retention",
        "durations": {"connection_location_months": {"months": 6, "doc": "DPO decision"}},
    }))
    assert load_policy(path) == Policy(connection_location_months=6)


def test_bare_integer_entries_and_every_duration(tmp_path: Path) -> None:
    values = {name: i + 1 for i, name in enumerate(DURATION_NAMES)}
    path = write(tmp_path, json.dumps({"format": 1, "durations": values}))
    assert load_policy(path) == Policy(**values)


def test_zero_months_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, '{"durations": {"identity_contact_after_end_with_document_months": 0}}')
    assert load_policy(path).identity_contact_after_end_with_document_months == 0


def test_empty_object_is_the_defaults(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "{}")) == Policy()


def test_as_json_round_trips() -> None:
    p = Policy(connection_location_months=7, consent_validity_months=25)
    assert parse_policy(json.dumps(p.as_json())) == p


UNKNOWN = """{
  "format": 1,
  "durations": {
    "consent_validity_months": 12,
    "conection_location_months": 6
  }
}
"""


def test_unknown_duration_names_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, UNKNOWN)
    with pytest.raises(ValueError) as err:
        load_policy(path)
    msg = str(err.value)
    assert str(path) in msg and "line 5" in msg and "conection_location_months" in msg
    assert "connection_location_months" in msg  # lists the known names


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("-1", "between 0 and"),
        ("1201", "between 0 and"),
        ('"13"', "integer"),
        ("13.5", "integer"),
        ("true", "integer"),
        ("null", "integer"),
        ('{"doc": "no months"}', "missing 'months'"),
        ('{"months": 13, "unit": "days"}', "unknown field"),
        ('{"months": 13, "doc": 5}', "doc must be a string"),
    ],
)
def test_bad_entry_names_key_and_line(tmp_path: Path, value: str, fragment: str) -> None:
    text = '{\n  "durations": {\n    "connection_location_months": ' + value + "\n  }\n}\n"
    with pytest.raises(ValueError) as err:
        load_policy(write(tmp_path, text))
    msg = str(err.value)
    assert "connection_location_months" in msg and "line 3" in msg and fragment in msg


def test_malformed_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "durations": {\n    "consent_validity_months": 13,\n  }\n}\n')
    with pytest.raises(ValueError, match=r"line 4 column 3: not valid JSON"):
        load_policy(path)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[]", "JSON object"),
        ('{"durations": []}', "durations: must be an object"),
        ('{"format": 2}', "format: unsupported 2"),
        ('{"doc": 1}', "doc: must be a string"),
        ('{"retention": {}}', "unknown top-level key 'retention'"),
    ],
)
def test_bad_shape(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        load_policy(write(tmp_path, text))


def test_missing_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.json")


def test_policy_refuses_bad_values_directly() -> None:
    with pytest.raises(ValueError, match="connection_location_months"):
        Policy(connection_location_months=-3)
    with pytest.raises(ValueError, match="consent_validity_months"):
        Policy(consent_validity_months=True)


def test_policy_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, '{"durations": {"consent_validity_months": 6}}')
    assert policy_from_env({POLICY_ENV: str(path)}) == Policy(consent_validity_months=6)
    assert policy_from_env({}) == Policy()
    assert policy_from_env({POLICY_ENV: "  "}) == Policy()
    with pytest.raises(ValueError):
        policy_from_env({POLICY_ENV: str(tmp_path / "missing.json")})

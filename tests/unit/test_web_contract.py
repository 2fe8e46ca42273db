"""The pure parts of the web service: the event schemas generated from the .avsc files, the
lookup index's normalisation and keyed hash, token requests, the HTTP bind setting."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest

from events.catalogue import load_catalogue
from processors.rules.lookup import (
    NotLookupValue,
    digest,
    lookup_key,
    normalise_email,
    normalise_phone,
)
from registre.services.tokens import BadTokenRequest, check_request
from registre.settings import SettingError, parse_bind
from registre.web.openapi import event_components
from registre.web.schemas import event_schema, examples, publishable

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
CATALOGUE = load_catalogue()


def _validator(name: str) -> jsonschema_rs.Draft202012Validator:
    schema = event_schema(CATALOGUE.types[name], CATALOGUE)
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


@pytest.mark.parametrize("etype", publishable(CATALOGUE), ids=lambda t: t.name)
def test_every_valid_example_matches_its_generated_schema(etype) -> None:  # noqa: ANN001
    found = examples(etype.name)
    assert found
    validator = _validator(etype.name)
    for event in found:
        validator.validate(event)


def test_the_generated_schemas_refuse_what_the_schema_alone_refuses() -> None:
    for path in sorted(EXAMPLES.glob("*.invalid.jsonl")):
        name = path.name.split(".")[0]
        if CATALOGUE.types[name].origin != "website":
            continue
        validator = _validator(name)
        for line in path.read_text().splitlines():
            case = json.loads(line)
            field = case["field"]
            structural = field in ("type", "event_id") or field.endswith("unknown_field")
            if structural:
                assert not validator.is_valid(case["event"]), (name, field)


def test_personal_fields_are_plain_values_on_the_way_in() -> None:
    created = event_schema(CATALOGUE.types["AccountCreated"], CATALOGUE)
    data = created["properties"]["data"]
    assert data["properties"]["email"]["format"] == "email"
    assert data["properties"]["gender"]["enum"] == ["female", "male", "other", "undisclosed"]
    assert data["properties"]["over_15"] == {"const": True, "description":
                                             "the policy requires users to be over 15"}
    assert "phone" not in data["required"] and "email" in data["required"]
    location = event_schema(CATALOGUE.types["ConnectionRecorded"], CATALOGUE)[
        "properties"]["data"]["properties"]["location"]["anyOf"][0]
    assert location["properties"]["latitude"] == {"type": "number", "minimum": -90,
                                                  "maximum": 90}
    assert created["properties"]["occurred_at"]["format"] == "date-time"
    assert created["additionalProperties"] is False


def test_the_request_body_is_one_of_the_events_or_a_batch_with_every_example() -> None:
    parts = event_components(CATALOGUE, 10_000)
    names = {t.name for t in publishable(CATALOGUE)}
    assert "KeysDestroyed" not in names and "AccountCreated" in names
    assert len(parts["schemas"]["Event"]["oneOf"]) == len(names)
    body = parts["requestBodies"]["Events"]["content"]["application/json"]
    assert len(body["schema"]["oneOf"]) == 2
    assert sum(len(examples(n)) for n in names) + 1 == len(body["examples"])


def test_emails_and_phones_are_normalised_before_hashing() -> None:
    assert normalise_email("  Zephyrine.Canarivaux@Exemple-Canari.FR ") == \
        "zephyrine.canarivaux@exemple-canari.fr"
    assert normalise_phone("+33 (6) 71-42.93 58") == "+33671429358"
    assert normalise_phone("06 71 42 93 58") == "0671429358"
    for bad in ("no-at-sign", "@x.fr", "a@"):
        with pytest.raises(NotLookupValue) as caught:
            normalise_email(bad)
        assert bad not in str(caught.value) or bad == "@"
    with pytest.raises(NotLookupValue):
        normalise_phone("+33 6 CANARI")
    key = lookup_key(b"k" * 32)
    assert key != lookup_key(b"j" * 32) and len(key) == 32
    assert digest(key, "email", "A@B.fr") == digest(key, "email", " a@b.FR")
    assert digest(key, "email", "a@b.fr") != digest(key, "phone", "+33612345678")
    assert digest(key, "phone", "+33 6 12 34 56 78") == digest(key, "phone", "+33612345678")


def test_token_requests_and_the_http_bind() -> None:
    assert check_request("website", ["compliance", "publish"]) == \
        ("website", ("publish", "compliance"))
    for name, scopes in (("bad name", ["publish"]), ("ok", []), ("ok", ["root"])):
        with pytest.raises(BadTokenRequest):
            check_request(name, scopes)
    assert parse_bind("127.0.0.1:8737", "x") == ("127.0.0.1", 8737)
    assert parse_bind("[::1]:9000", "x") == ("::1", 9000)
    for bad in ("8737", "host:", "host:0", "host:99999", ":80"):
        with pytest.raises(SettingError):
            parse_bind(bad, "--http")

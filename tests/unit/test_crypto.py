"""Field encryption: sealing, key wrapping, the master key, and tampering with sealed values.

The tampering tests give every subject, category and version the *same* data key, so that
only the associated data (event id, subject, type, field path, key version) can make a moved
or relabelled ciphertext fail: that binding is what they check.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
import struct
from pathlib import Path

import pytest

from events.catalogue import load_catalogue
from events.codec import Record, decode, encode, key_refs, reveal
from events.crypto import (
    REDACTED,
    MasterKeyError,
    associated_data,
    load_master_key,
    new_data_key,
    open_sealed,
    seal,
    sealed_version,
    unwrap_key,
    wrap_key,
)
from events.validation import parse_event

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
KEY = new_data_key()


def _example(name: str, line: int) -> dict:
    text = (EXAMPLES / f"{name}.valid.jsonl").read_text(encoding="utf-8").splitlines()[line - 1]
    return json.loads(text)


def _same_key_everywhere(ref, version):
    return KEY


def _sealed(event) -> Record:
    return decode(encode(event, {ref: (1, KEY) for ref in key_refs(event)}))


def _with(record: Record, path: tuple[str, ...], value) -> Record:
    data = copy.deepcopy(record.data)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return record._replace(data=data)


def _get(record: Record, path: tuple[str, ...]):
    node = record.data
    for part in path:
        node = node[part]
    return node


@pytest.fixture
def alice():
    return parse_event(_example("AccountCreated", 1))


@pytest.fixture
def alice_again(alice):
    """Another event of the same subject and type, with other values."""
    obj = _example("AccountCreated", 2)
    obj["subject_id"] = alice.subject_id
    return parse_event(obj)


@pytest.fixture
def bob():
    """Another subject, same event type."""
    return parse_event(_example("AccountCreated", 2))


def test_seal_and_open():
    aad = associated_data("e", "s", "T", "data.x", 1)
    sealed = seal(KEY, 1, "Zéphyrine".encode(), aad)
    assert sealed_version(sealed) == 1
    assert sealed[0] == 0x01 and struct.unpack(">I", sealed[1:5])[0] == 1
    assert "Zéphyrine".encode() not in sealed
    assert open_sealed(KEY, sealed, aad) == "Zéphyrine".encode()
    assert open_sealed(new_data_key(), sealed, aad) is None
    assert open_sealed(KEY, sealed, associated_data("e", "s", "T", "data.y", 1)) is None
    assert seal(KEY, 1, b"same", aad) != seal(KEY, 1, b"same", aad)  # fresh nonce


def test_redacted_and_malformed_values_read_as_absent():
    aad = associated_data("e", "s", "T", "data.x", 1)
    for raw in (REDACTED, b"", b"\x01\x00\x00\x00\x01", b"\x02" + bytes(40)):
        assert sealed_version(raw) is None
        assert open_sealed(KEY, raw, aad) is None


def test_untampered_events_decrypt(alice, alice_again, bob):
    for event in (alice, alice_again, bob):
        assert reveal(_sealed(event), _same_key_everywhere).to_json() == event.to_json()


def test_ciphertext_swapped_between_two_events_of_the_subject_fails(alice, alice_again):
    a, b = _sealed(alice), _sealed(alice_again)
    path = ("email",)
    moved = _with(a, path, _get(b, path))
    out = reveal(moved, _same_key_everywhere).to_json()["data"]
    assert out["email"] is None
    assert out["first_name"] == alice.data["first_name"]  # the others still decrypt


def test_ciphertext_swapped_between_subjects_fails(alice, bob):
    a, b = _sealed(alice), _sealed(bob)
    for path in (("last_name",), ("postal_address", "city")):
        out = reveal(_with(a, path, _get(b, path)), _same_key_everywhere).to_json()["data"]
        node = out
        for part in path:
            node = node[part]
        assert node is None, path
    # and the whole record relabelled as the other subject does not decrypt either
    relabelled = a._replace(subject_id=bob.subject_id)
    out = reveal(relabelled, _same_key_everywhere).to_json()["data"]
    assert out["email"] is None and out["first_name"] is None


def test_ciphertext_swapped_between_two_fields_fails(alice):
    a = _sealed(alice)
    swapped = _with(_with(a, ("first_name",), a.data["last_name"]),
                    ("last_name",), a.data["first_name"])
    out = reveal(swapped, _same_key_everywhere).to_json()["data"]
    assert out["first_name"] is None and out["last_name"] is None
    assert out["email"] == alice.data["email"]
    nested = _with(a, ("postal_address", "city"), a.data["postal_address"]["postal_code"])
    assert reveal(nested, _same_key_everywhere).to_json()["data"]["postal_address"]["city"] is None


def test_ciphertext_moved_to_another_event_id_or_type_fails(alice):
    a = _sealed(alice)
    other_id = a._replace(event_id="00000000-0000-4000-8000-000000000000")
    assert reveal(other_id, _same_key_everywhere).to_json()["data"]["email"] is None
    updated = load_catalogue().types["AccountUpdated"]
    as_update = a._replace(type=updated.name, data={"email": a.data["email"]})
    assert reveal(as_update, _same_key_everywhere).to_json()["data"]["email"] is None


def test_altered_key_version_fails(alice):
    a = _sealed(alice)
    sealed = a.data["email"]
    assert sealed_version(sealed) == 1
    relabelled = sealed[:1] + struct.pack(">I", 2) + sealed[5:]
    assert sealed_version(relabelled) == 2
    asked = []

    def lookup(ref, version):
        asked.append(version)
        return KEY  # the right key bytes, offered under the forged version

    out = reveal(_with(a, ("email",), relabelled), lookup).to_json()["data"]
    assert out["email"] is None
    assert 2 in asked
    assert out["first_name"] == alice.data["first_name"]


def test_flipped_bit_fails(alice):
    a = _sealed(alice)
    sealed = bytearray(a.data["email"])
    sealed[-1] ^= 0x01
    assert reveal(_with(a, ("email",), bytes(sealed)), _same_key_everywhere).data["email"] is None


def test_double_fields_are_sealed_too():
    event = parse_event(_example("ConnectionRecorded", 1))
    record = _sealed(event)
    lat = event.data["location"]["latitude"]
    assert struct.pack(">d", lat) not in encode(event, {r: (1, KEY) for r in key_refs(event)})
    swapped = _with(record, ("location", "latitude"), record.data["location"]["longitude"])
    out = reveal(swapped, _same_key_everywhere).to_json()["data"]["location"]
    assert out["latitude"] is None and out["longitude"] == event.data["location"]["longitude"]


def test_wrap_and_unwrap():
    master, data_key = new_data_key(), new_data_key()
    wrapped = wrap_key(master, "acc-000042/identity/-/v1", data_key)
    assert data_key not in wrapped
    assert unwrap_key(master, "acc-000042/identity/-/v1", wrapped) == data_key
    with pytest.raises(MasterKeyError):
        unwrap_key(new_data_key(), "acc-000042/identity/-/v1", wrapped)
    with pytest.raises(MasterKeyError):  # a wrapped key moved to another subject's row
        unwrap_key(master, "acc-000317/identity/-/v1", wrapped)


def test_master_key_from_environment_file_or_generated(tmp_path: Path):
    raw = new_data_key()
    text = base64.b64encode(raw).decode()
    key, where = load_master_key({"REGISTRE_MASTER_KEY": text}, tmp_path, generate=False)
    assert key == raw and where == "environment" and text not in where
    path = tmp_path / "elsewhere.key"
    path.write_text(text + "\n")
    key, where = load_master_key({"REGISTRE_MASTER_KEY_FILE": str(path)}, tmp_path, False)
    assert key == raw and where == str(path)
    with pytest.raises(MasterKeyError, match="no master key"):
        load_master_key({}, tmp_path / "home", generate=False)
    key, where = load_master_key({}, tmp_path / "home", generate=True)
    assert len(key) == 32 and "generated" in where
    mode = stat.S_IMODE(os.stat(tmp_path / "home" / "master.key").st_mode)
    assert mode == 0o600
    assert load_master_key({}, tmp_path / "home", generate=True)[0] == key  # stable


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_malformed_master_key(text, tmp_path: Path):
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(MasterKeyError) as err:
        load_master_key({"REGISTRE_MASTER_KEY_FILE": str(path)}, tmp_path, generate=False)
    assert text not in str(err.value) or not text
    if text:
        with pytest.raises(MasterKeyError):
            load_master_key({"REGISTRE_MASTER_KEY": text}, tmp_path, generate=False)

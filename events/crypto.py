"""Field encryption: AES-256-GCM under per-subject data keys, themselves wrapped by a master key.

A sealed value is ``0x01 | key_version (4 bytes, big-endian) | nonce (12) | ciphertext+tag``.
The associated data binds event id, subject, event type, field path and key version, so a
ciphertext moved to another event, subject or field, or relabelled with another key version,
fails to decrypt. ``0x00`` alone marks a field that could not be sealed because the subject
was erased before the event was published (no key may be created for it): it reads as absent.
"""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED = 0x01
REDACTED = b"\x00"
_HEADER = struct.Struct(">BI")


class MasterKeyError(Exception):
    """The master key is missing or malformed."""


def associated_data(
    event_id: str, subject_id: str, event_type: str, path: str, version: int
) -> bytes:
    return "\x1f".join((event_id, subject_id, event_type, path, str(version))).encode()


def seal(key: bytes, version: int, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return _HEADER.pack(SEALED, version) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def sealed_version(sealed: bytes) -> int | None:
    """The key version a sealed value claims, or None for a redacted or malformed value."""
    if len(sealed) < _HEADER.size + 12 + 16 or sealed[0] != SEALED:
        return None
    return _HEADER.unpack_from(sealed)[1]


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """Decrypt; None when the value is redacted, malformed, or bound to another context."""
    if sealed_version(sealed) is None:
        return None
    nonce = sealed[_HEADER.size : _HEADER.size + 12]
    try:
        return AESGCM(key).decrypt(nonce, sealed[_HEADER.size + 12 :], aad)
    except InvalidTag:
        return None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_key(master: bytes, key_id: str, data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master).encrypt(nonce, data_key, key_id.encode())


def unwrap_key(master: bytes, key_id: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], key_id.encode())
    except InvalidTag as exc:
        raise MasterKeyError(f"data key {key_id} does not unwrap: wrong master key?") from exc


def _decode_master(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise MasterKeyError(f"{where}: master key is not base64") from exc
    if len(raw) != 32:
        raise MasterKeyError(f"{where}: master key must be 32 bytes (base64), got {len(raw)}")
    return raw


def load_master_key(
    env: dict[str, str], home: Path, generate: bool
) -> tuple[bytes, str]:
    """Master key from REGISTRE_MASTER_KEY, REGISTRE_MASTER_KEY_FILE, or HOME/master.key.

    With ``generate`` (the embedded default) a missing HOME/master.key is created with 0600
    permissions. Returns the key and a description of where it came from (never the key).
    """
    if env.get("REGISTRE_MASTER_KEY"):
        return _decode_master(env["REGISTRE_MASTER_KEY"], "REGISTRE_MASTER_KEY"), "environment"
    path = Path(env.get("REGISTRE_MASTER_KEY_FILE") or home / "master.key")
    if path.exists():
        return _decode_master(path.read_text(), str(path)), str(path)
    if not generate:
        raise MasterKeyError(
            f"no master key: set REGISTRE_MASTER_KEY or REGISTRE_MASTER_KEY_FILE ({path} missing)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(new_data_key()).decode() + "\n")
    return _decode_master(path.read_text(), str(path)), f"{path} (generated)"

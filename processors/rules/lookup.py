"""The keyed lookup index's rules: how an email or a phone is normalised and hashed.

The index (``projections.contact_lookup``) holds ``HMAC-SHA256(lookup key, kind | value)`` of
the normalised value, never the value. The lookup key is derived from the master key with HKDF
under its own label, so it is not a data key and is useless without the master key: a row
cannot be tested against a guessed address by someone holding only the database.

Normalisation, decided once here for the processors and the questions alike:

* email: surrounding spaces removed, Unicode NFC, then the whole address lower-cased. The
  domain is case-insensitive by the RFCs; the local part is case-insensitive at practically
  every provider, and a person who writes in rarely remembers the case they signed up with.
  Nothing else is folded (``+tags`` and dots stay: they may be different mailboxes).
* phone: spaces, dots, dashes and parentheses removed; digits kept, with a leading ``+`` kept.
  No country code is guessed: ``06 71 42 93 58`` and ``+33 6 71 42 93 58`` are different.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LOOKUP_LABEL = b"registre/lookup/v1"
KINDS = ("email", "phone")
_PHONE_NOISE = re.compile(r"[\s.\-()]")


class NotLookupValue(ValueError):
    """A value that cannot be looked up (the message names the kind, never the value)."""


def normalise_email(value: str) -> str:
    text = unicodedata.normalize("NFC", value.strip()).lower()
    if text.count("@") != 1 or text.startswith("@") or text.endswith("@"):
        raise NotLookupValue("email: not an email address")
    return text


def normalise_phone(value: str) -> str:
    text = _PHONE_NOISE.sub("", value.strip())
    digits = text[1:] if text.startswith("+") else text
    if not digits.isascii() or not digits.isdigit() or len(digits) < 4:
        raise NotLookupValue("phone: not a phone number")
    return text


def normalise(kind: str, value: str) -> str:
    """The normalised value of ``kind`` (email or phone)."""
    if kind == "email":
        return normalise_email(value)
    if kind == "phone":
        return normalise_phone(value)
    raise NotLookupValue(f"unknown lookup kind {kind!r}")


def lookup_key(master_key: bytes) -> bytes:
    """The index's HMAC key: HKDF-SHA256 of the master key under the lookup label."""
    if len(master_key) != 32:
        raise ValueError("the master key is 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=LOOKUP_LABEL).derive(master_key)


def digest(key: bytes, kind: str, value: str) -> bytes:
    """The keyed hash stored for (kind, value); ``value`` is normalised here."""
    message = kind.encode() + b"\x1f" + normalise(kind, value).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()

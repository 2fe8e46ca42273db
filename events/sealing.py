"""Sealing the personal fields of many events with few keys, without redoing per-key work.

The sealed layout and the associated data are those of `events.crypto` (``seal`` and
``associated_data``); only the repeated work goes: a batch of events uses a few keys many times,
so each key's AES-GCM context, version header and associated-data suffix are built once per
`KeyRing`, and each event's associated-data prefix (event id, subject, type) once per event.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.catalogue import MONTHLY_CATEGORIES
from events.crypto import REDACTED, SEALED
from events.keys import KeyRef

_HEADER = struct.Struct(">BI")  # as events.crypto: the SEALED marker, then the key version
_SEP = b"\x1f"  # the separator of events.crypto.associated_data
_UNKNOWN: Any = object()  # a category whose key is not looked up yet

_KeyContext = tuple[bytes, AESGCM, bytes]
"""What sealing under one key needs, built once: sealed header, cipher, associated-data end.

A plain tuple of objects the garbage collector does not track, so that the collector soon
untracks it too: a batch prepares a thousand of them.
"""


def _key_context(version: int, key: bytes) -> _KeyContext:
    return _HEADER.pack(SEALED, version), AESGCM(key), _SEP + str(version).encode()


class KeyRing:
    """The data keys of one batch (``ref -> (version, key)``), each prepared on first use.

    Lives as long as the batch: no key outlives the key store's own cache through it.
    """

    def __init__(self, keys: Mapping[KeyRef, tuple[int, bytes]]) -> None:
        self._keys = {(r.subject_id, r.category, r.period): vk for r, vk in keys.items()}
        self._contexts: dict[tuple[str, str, str], _KeyContext] = {}

    def context(self, subject_id: str, category: str, period: str) -> _KeyContext | None:
        """The key of that subject, category and period; None when there is none (erased)."""
        where = (subject_id, category, period)
        context = self._contexts.get(where)
        if context is None:
            entry = self._keys.get(where)
            if entry is None:
                return None
            context = self._contexts[where] = _key_context(*entry)
        return context


class EventSealer:
    """Seals the personal leaves of one event with the keys of a ring (``REDACTED`` if none).

    ``month`` is the event's key period for monthly categories (see `events.keystore`).
    """

    __slots__ = ("_ring", "_subject_id", "_month", "_aad_prefix", "_keys")

    def __init__(self, ring: KeyRing, event_id: str, subject_id: str, event_type: str,
                 month: str) -> None:
        self._ring = ring
        self._subject_id = subject_id
        self._month = month
        # associated_data(event_id, subject_id, event_type, path, version), in three parts
        self._aad_prefix = _SEP.join((event_id.encode(), subject_id.encode(),
                                      event_type.encode(), b""))
        self._keys: dict[str, _KeyContext | None] = {}  # by category, looked up once

    def _key(self, category: str) -> _KeyContext | None:
        period = self._month if category in MONTHLY_CATEGORIES else ""
        key = self._keys[category] = self._ring.context(self._subject_id, category, period)
        return key

    def seal(self, category: str, path: bytes, plaintext: bytes) -> bytes:
        """``path`` is the field's dotted path, UTF-8 encoded."""
        key = self._keys.get(category, _UNKNOWN)
        if key is _UNKNOWN:
            key = self._key(category)
        if key is None:
            return REDACTED
        header, aead, aad_suffix = key
        nonce = os.urandom(12)
        return header + nonce + aead.encrypt(nonce, plaintext, self._aad_prefix + path + aad_suffix)

"""Composition root: builds the key store, publisher and readers from the settings."""

from __future__ import annotations

from events.crypto import load_master_key
from events.keystore import KeyStore
from events.publisher import Publisher
from registre.settings import Settings


def master_key(settings: Settings) -> bytes:
    """The master key; the embedded default generates HOME/master.key (0600) on first use."""
    key, _ = load_master_key(dict(settings.env), settings.home, generate=settings.embedded)
    return key


def open_keystore(settings: Settings, cache_seconds: float = 0.0) -> KeyStore:
    _, database_url = settings.endpoints()
    return KeyStore.connect(database_url, master_key(settings), cache_seconds)


def open_publisher(settings: Settings, allow_registre: bool = False) -> Publisher:
    kafka, _ = settings.endpoints()
    keystore = open_keystore(settings, cache_seconds=30.0)
    return Publisher(kafka, keystore, allow_registre=allow_registre, owns_keystore=True)

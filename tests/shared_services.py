"""A broker and a PostgreSQL that several `registre run` nodes share, as production runs them
(for the fault suite's two-node scenario)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy.runtime import EmbeddedBroker, EmbeddedPostgres
from deploy.topics import ensure_topics
from events.crypto import new_data_key
from projections.migrate import migrate
from projections.roles import login_url


@contextmanager
def shared_services(home: Path) -> Iterator[tuple[str, str, str]]:
    """(Kafka bootstrap, owner database URL, a base64 key) of fresh shared services."""
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    pg, broker = EmbeddedPostgres(home / "pg", password), EmbeddedBroker(home / "broker")
    try:
        url = login_url(pg.start(), "postgres", password)
        kafka = broker.start()
        ensure_topics(kafka)
        migrate(url)
        yield kafka, url, base64.b64encode(new_data_key()).decode()
    finally:
        broker.stop()
        pg.stop()

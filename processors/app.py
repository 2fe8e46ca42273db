"""The Faust application: explicit settings, broker and database from the environment.

Nothing authoritative lives in Faust: tables are not used (``memory://`` store), positions and
rows live in PostgreSQL, written in one transaction per batch.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import faust

from events.catalogue import topic_name
from events.crypto import load_master_key
from processors import tuning
from projections.jsonb import use_fast_json
from registre.settings import Settings

PROCESSOR_GROUP = "registre-processors"  # the Faust app id, so the Kafka consumer group


@dataclass(frozen=True)
class WorkerConfig:
    kafka: str
    database_url: str
    worker_id: str
    embedded: bool  # tune the group protocol for the local broker
    batch_size: int = 2000
    batch_within: float = 0.05
    sweep_seconds: float = 3600.0
    env: Mapping[str, str] = field(default_factory=dict)
    master_key: bytes = b""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @classmethod
    def from_env(cls) -> WorkerConfig:
        settings = Settings.from_env()
        kafka, database_url = settings.endpoints()
        env = settings.env
        return cls(
            kafka=kafka,
            database_url=database_url,
            worker_id=env.get("REGISTRE_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
            embedded=env.get("REGISTRE_EMBEDDED", "") == "1",
            batch_size=int(env.get("REGISTRE_BATCH_SIZE") or 2000),
            sweep_seconds=float(env.get("REGISTRE_SWEEP_SECONDS") or 3600),
            env=env,
            master_key=load_master_key(dict(env), settings.home, generate=False)[0],
        )


def create_app(config: WorkerConfig) -> faust.App:
    tuning.apply()
    use_fast_json()
    # Against the embedded broker the first rebalance otherwise waits ~30 s (session timeout
    # / 2); a short session timeout brings a worker's start to a few seconds.
    session = 6.0 if config.embedded else 30.0
    return faust.App(
        PROCESSOR_GROUP,
        broker=f"kafka://{config.kafka}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=1.0 if config.embedded else 3.0,
        broker_rebalance_timeout=session,
        broker_commit_interval=1.0,
        producer_acks=-1,
        stream_buffer_maxsize=4 * config.batch_size,
        consumer_max_fetch_size=4 * 1024 * 1024,
        broker_max_poll_records=config.batch_size,
    )


def ledger_topic(app: faust.App) -> faust.TopicT:
    return app.topic(topic_name("ledger"), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def deadletter_topic(app: faust.App) -> faust.TopicT:
    return app.topic(topic_name("deadletter"), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")

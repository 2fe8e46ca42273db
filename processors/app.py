"""The Faust application: explicit settings, nothing authoritative inside it.

Faust tables are not used (``memory://`` store): positions and rows live in PostgreSQL, written
in one transaction per batch by the ledger the agents are given (`processors.agents`). This
module knows Faust and the topics; it knows nothing of PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faust

from events.catalogue import topic_name
from processors import tuning

PROCESSOR_GROUP = "registre-processors"  # the Faust app id, so the Kafka consumer group
BATCH_SIZE = 2000  # events per batch, unless REGISTRE_BATCH_SIZE says otherwise


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker process needs to know of its broker and its pace."""

    kafka: str
    worker_id: str
    embedded: bool  # tune the group protocol for the local broker
    batch_size: int = BATCH_SIZE
    batch_within: float = 0.05
    sweep_seconds: float = 3600.0
    retry_seconds: float = 30.0  # how soon a subject's failed erasure or sweep is tried again
    session_seconds: float | None = None  # the group's session timeout (None: 6 s embedded,
    # 30 s otherwise): how soon the partitions of a worker that died go to another
    datadir: str | None = None  # Faust's own directory (None: `<app id>-data` in the cwd)


def create_app(config: WorkerConfig) -> faust.App:
    """The Faust app with registre's settings (no agent yet)."""
    tuning.apply()
    # Against the embedded broker the first rebalance otherwise waits ~30 s (session timeout
    # / 2); a short session timeout brings a worker's start to a few seconds.
    session = config.session_seconds or (6.0 if config.embedded else 30.0)
    if config.datadir:  # Faust makes only its last level
        Path(config.datadir).parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        PROCESSOR_GROUP,
        broker=f"kafka://{config.kafka}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=min(3.0, session / 6),
        broker_rebalance_timeout=session,
        broker_commit_interval=1.0,
        producer_acks=-1,
        stream_buffer_maxsize=4 * config.batch_size,
        consumer_max_fetch_size=4 * 1024 * 1024,
        broker_max_poll_records=config.batch_size,
        **({"datadir": config.datadir} if config.datadir else {}),
    )


def raw_topic(app: faust.App, role: str) -> faust.TopicT:
    """The topic of that role in `schemas/topics.json`, keys and values as raw bytes."""
    return app.topic(topic_name(role), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def ledger_topic(app: faust.App) -> faust.TopicT:
    return raw_topic(app, "ledger")

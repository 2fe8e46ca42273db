"""Create the topics of `schemas/topics.json` on a Kafka cluster (idempotent)."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from events.catalogue import load_topics


def ensure_topics(bootstrap: str, timeout_ms: int = 10_000) -> list[str]:
    """Create missing topics; replication is capped at the number of brokers. Returns names."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms,
                             bootstrap_timeout_ms=5_000,
                             client_id="registre-admin")
    try:
        existing = set(admin.list_topics())
        brokers = max(1, len(admin.describe_cluster().get("brokers", [])))
        wanted = [
            NewTopic(
                t["name"], t["partitions"], min(t["replication_factor"], brokers),
                topic_configs={"retention.ms": str(t["retention_ms"]),
                               "cleanup.policy": t["cleanup_policy"]},
            )
            for t in load_topics()
            if t["name"] not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
        return [t["name"] for t in load_topics()]
    finally:
        admin.close()

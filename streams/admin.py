"""Kafka administration: creating the scorer's topics with their partition counts (auto-creation is
off on purpose), and reading a consumer group's committed offsets from the broker."""

from __future__ import annotations

import logging

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import ConfigError
from streams.settings import Settings

log = logging.getLogger("streams.admin")


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; return the names created. An existing topic with another partition
    count is an error: a user's profile table partition must match their events' partition."""
    admin = AdminClient(settings.confluent_config())
    wanted = settings.topics.all()
    existing = admin.list_topics(timeout=timeout).topics
    for name in wanted:
        if name in existing and len(existing[name].partitions) != settings.partitions:
            raise ConfigError(
                f"topic {name} has {len(existing[name].partitions)} partitions, settings say {settings.partitions}"
            )
    missing = [n for n in wanted if n not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=settings.partitions, replication_factor=settings.replication_factor)
            for n in missing
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():  # keep `admin` referenced until every future resolves
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if (
                exc.args
                and isinstance(exc.args[0], KafkaError)
                and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
            ):
                continue
            raise
    log.info("created topics %s", created)
    return created


class GroupOffsets:
    """The broker's committed offsets of one consumer group, read with the admin API: no group
    membership, so it can be asked from inside a worker without disturbing its own consumer."""

    def __init__(self, settings: Settings, group: str, timeout: float = 10.0) -> None:
        self._admin = AdminClient(settings.confluent_config())
        self._group = group
        self._timeout = timeout

    def committed(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """The group's committed offset of each partition, in one request; None where it has never
        committed one. Blocking (one OffsetFetch round trip): call it from a thread in async code."""
        request = ConsumerGroupTopicPartitions(self._group, [TopicPartition(t, p) for t, p in partitions])
        futures = self._admin.list_consumer_group_offsets([request])
        answer = futures[self._group].result(timeout=self._timeout)
        found: dict[tuple[str, int], int | None] = dict.fromkeys(partitions)
        for tp in answer.topic_partitions or []:
            if tp.error is not None:
                raise KafkaException(tp.error)
            found[tp.topic, tp.partition] = tp.offset if tp.offset >= 0 else None
        return found

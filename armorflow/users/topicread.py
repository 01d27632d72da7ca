"""Read event topics without a consumer group: a snapshot to the end, or a live tail.

``record`` and ``query`` want "what the topics hold now" (or "what arrives from now on"),
not a share of a group's partitions: the reader assigns every partition itself, so it
starts at once (no group join) and knows when it has reached the high watermarks it saw
when it started.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from armorflow.config import KafkaSettings
from armorflow.events import KINDS, Event, Rejects
from armorflow.kafka import CONSUMER_QUEUE, decode_events
from armorflow.topics import EVENT_TOPICS, event_topic

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]


class TopicSpecError(ValueError):
    """A ``--topics`` / ``--from`` value that names no event topic."""


class BrokerUnreachable(RuntimeError):
    """The brokers did not answer the reader's metadata or watermark requests."""


def parse_topics(spec: str) -> list[str]:
    """``all`` or a comma list of kinds (``file,exec``) or full topic names."""
    spec = spec.strip()
    if spec in ("", "all"):
        return list(EVENT_TOPICS)
    topics: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item in KINDS:
            topics.append(event_topic(item))
        elif item in EVENT_TOPICS:
            topics.append(item)
        else:
            raise TopicSpecError(
                f"{item!r} is neither an event kind ({', '.join(KINDS)}) nor an event topic"
            )
    if not topics:
        raise TopicSpecError(f"no topic in {spec!r}")
    return list(dict.fromkeys(topics))


@dataclass
class TopicReader:
    """Every partition of ``topics``, assigned directly, read from the start or the end."""

    settings: KafkaSettings
    topics: list[str]
    from_beginning: bool = True
    timeout_s: float = 15.0
    #: Per partition: the next offset to read once the snapshot is complete.
    ends: dict[PartitionKey, int] = field(default_factory=dict)
    #: Per partition: the next offset this reader would get.
    positions: dict[PartitionKey, int] = field(default_factory=dict)
    messages: int = 0
    missing_topics: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            self.settings.librdkafka(
                **{
                    # Required by librdkafka even though nothing joins or commits.
                    "group.id": f"armorflow-reader-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    "auto.offset.reset": "earliest" if self.from_beginning else "latest",
                    **CONSUMER_QUEUE,
                }
            )
        )
        self._assign()

    def _assign(self) -> None:
        try:
            self._assign_partitions()
        except KafkaException as exc:
            self._consumer.close()
            raise BrokerUnreachable(
                f"cannot read topics from {self.settings.bootstrap_servers}: {exc}"
            ) from None

    def _assign_partitions(self) -> None:
        metadata = self._consumer.list_topics(timeout=self.timeout_s)
        assignment: list[TopicPartition] = []
        for topic in self.topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                self.missing_topics.append(topic)
                log.warning("topic %s does not exist on %s: skipped",
                            topic, self.settings.bootstrap_servers)
                continue
            for partition in sorted(described.partitions):
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self.timeout_s
                )
                key = (topic, partition)
                self.ends[key] = high
                self.positions[key] = low if self.from_beginning else high
                # A live tail starts at the watermark just read rather than at the
                # symbolic end, which librdkafka resolves later: an event published
                # right after start-up must not fall in between.
                start = OFFSET_BEGINNING if self.from_beginning else high
                assignment.append(TopicPartition(topic, partition, start))
        self._consumer.assign(assignment)

    @property
    def snapshot_messages(self) -> int:
        """Messages between the start positions and the high watermarks seen at start."""
        return sum(max(0, self.ends[k] - self.positions.get(k, 0)) for k in self.ends)

    def at_end(self) -> bool:
        """True once every partition was read up to the high watermark seen at start."""
        return all(self.positions.get(k, 0) >= end for k, end in self.ends.items())

    def batches(
        self,
        rejects: Rejects,
        *,
        until_end: bool,
        stop: Callable[[], bool] = lambda: False,
        poll_s: float = 0.2,
    ) -> Iterator[list[Event]]:
        """Yield the valid events of each message; bad ones are counted in ``rejects``.

        With ``until_end`` the reader stops at the snapshot's end; otherwise it follows
        the topics until ``stop()`` says so.
        """
        while not stop():
            if until_end and self.at_end():
                return
            for msg in self._consumer.consume(num_messages=500, timeout=poll_s):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                self.messages += 1
                self.positions[(msg.topic() or "", msg.partition() or 0)] = (
                    (msg.offset() or 0) + 1
                )
                events = decode_events(msg.value() or b"", rejects)
                if events:
                    yield events
                    if stop():
                        return

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

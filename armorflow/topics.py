"""The Kafka topic layout armorflow uses; ``docs/topics.md`` documents it.

Every topic that carries per-profile data is keyed by the profile name and has the same
partition count, so that one profile's events of every kind, its control events and its
model land in the same partition number of each topic (co-partitioning): one pipeline
worker owns a profile end to end without a repartition hop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from armorflow.events import KINDS

EVENT_TOPIC_PREFIX: Final = "armorflow.events."
CONTROL_TOPIC: Final = "armorflow.control"
MODELS_TOPIC: Final = "armorflow.models"
STATUS_TOPIC: Final = "armorflow.status"
TARGETS_TOPIC: Final = "armorflow.targets"

#: Partition count of every profile-keyed topic. Changing it re-homes profiles.
DEFAULT_PARTITIONS: Final = 4


def event_topic(kind: str) -> str:
    """The topic that carries events of one kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    return EVENT_TOPIC_PREFIX + kind


EVENT_TOPICS: Final = tuple(event_topic(k) for k in KINDS)


@dataclass(frozen=True)
class TopicSpec:
    """A topic armorflow creates up front (auto-created topics get 1 partition)."""

    name: str
    partitions: int
    compacted: bool
    purpose: str


def topic_specs(partitions: int = DEFAULT_PARTITIONS) -> list[TopicSpec]:
    specs = [
        TopicSpec(t, partitions, False, f"events of kind `{t.removeprefix(EVENT_TOPIC_PREFIX)}`")
        for t in EVENT_TOPICS
    ]
    specs += [
        TopicSpec(CONTROL_TOPIC, partitions, False, "window control: start, update, stop, delete"),
        TopicSpec(MODELS_TOPIC, partitions, True, "completed behaviour models and profiles"),
        TopicSpec(STATUS_TOPIC, partitions, True, "per-profile modeling status for the operator"),
        TopicSpec(TARGETS_TOPIC, 1, True, "which containers the agents capture, per profile"),
    ]
    return specs


def partition_for(profile: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition a profile's messages go to in every profile-keyed topic.

    The Java client's default partitioner (murmur2 of the key, sign bit cleared, modulo
    the partition count), which librdkafka's ``murmur2_random``, aiokafka and Faust use
    too: every client agrees on where a profile lives.
    """
    from aiokafka.partitioner import murmur2

    return int(murmur2(profile.encode()) & 0x7FFFFFFF) % partitions

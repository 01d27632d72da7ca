"""A real round trip through a real Kafka-protocol broker: produce, consume in a group,
commit, and resume from the committed offset after the consumer and the broker restart."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from armorflow.broker import EmbeddedBroker
from armorflow.events import Rejects, make_event
from armorflow.kafka import EventProducer, consume_until_idle, make_consumer
from armorflow.topics import event_topic

pytestmark = pytest.mark.broker

N = 10_000


def _events(profile: str, n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        make_event(
            "file", ts=1_000 + i, node="n1", profile=profile, namespace="default", pod="p",
            container="c", container_id="cid", pid=i, comm="cat",
            path=f"/data/{i}", perms="r", owner=True,
        )
        for i in range(start, start + n)
    ]


def _consume(
    broker: EmbeddedBroker, group: str, profile: str, limit: int | None = None
) -> list[int]:
    consumer = make_consumer(broker.settings(), group, **{"session.timeout.ms": 6000})
    consumer.subscribe([event_topic("file")])
    rejects = Rejects()
    pids: list[int] = []
    # The topic is shared with the session's other tests: count only this profile's
    # events, and stop (committing what was read) once the limit is reached.
    try:
        with contextlib.closing(
            consume_until_idle(consumer, rejects, idle_s=3.0, commit=True)
        ) as events:
            for e in events:
                if e["profile"] == profile:
                    pids.append(int(e["pid"]))
                    if limit is not None and len(pids) >= limit:
                        break
    finally:
        consumer.close()
    assert rejects.count == 0
    return pids


def test_round_trip_commit_and_resume(any_broker: EmbeddedBroker) -> None:
    profile = f"rt-{uuid.uuid4().hex[:8]}"
    producer = EventProducer(any_broker.settings(), batch_size=1)  # one event per message
    producer.publish_many(_events(profile, N))
    producer.flush()
    assert producer.sent_messages == N

    group = f"g-{profile}"
    first = _consume(any_broker, group, profile, limit=4_000)
    assert len(first) == 4_000
    # A new consumer in the same group resumes from the committed offset.
    rest = _consume(any_broker, group, profile)
    assert sorted(first + rest) == list(range(N))


def test_committed_offsets_survive_a_broker_restart(fresh_broker: EmbeddedBroker) -> None:
    broker = fresh_broker
    profile = "restart"
    producer = EventProducer(broker.settings())
    producer.publish_many(_events(profile, 1_000))
    producer.flush()
    first = _consume(broker, "g-restart", profile, limit=1_000)
    assert len(first) == 1_000
    broker.stop()  # clean stop persists noida's data dir
    broker.start(create=False)
    producer = EventProducer(broker.settings())
    producer.publish_many(_events(profile, 500, start=1_000))
    producer.flush()
    rest = _consume(broker, "g-restart", profile)
    assert sorted(rest) == list(range(1_000, 1_500))


def test_batched_messages_carry_many_events(noida_broker: EmbeddedBroker) -> None:
    profile = f"batch-{uuid.uuid4().hex[:8]}"
    producer = EventProducer(noida_broker.settings(), batch_size=500)
    producer.publish_many(_events(profile, 2_000))
    producer.flush()
    assert producer.sent_messages == 4
    assert sorted(_consume(noida_broker, f"g-{profile}", profile)) == list(range(2_000))

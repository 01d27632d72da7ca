"""Plain Kafka clients for events: a batching producer and a decoding consumer.

Both speak only the Kafka protocol through confluent-kafka (librdkafka), so they work the
same against the embedded broker and a production cluster. Keys hash with murmur2, as
Java, aiokafka and Faust clients do, so that a profile lands in the same partition
number of every topic whichever client wrote it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from armorflow.config import KafkaSettings
from armorflow.events import Event, EventError, Rejects, decode_value, validate
from armorflow.topics import event_topic

log = logging.getLogger(__name__)

#: Events per Kafka message: large enough that per-message costs vanish, small enough
#: that one message stays far below the broker's message size limit.
DEFAULT_BATCH = 500
#: How long librdkafka keeps trying to deliver a message before it reports it failed.
DEFAULT_MESSAGE_TIMEOUT_MS = 15_000


def producer_config(
    settings: KafkaSettings, *, message_timeout_ms: int = DEFAULT_MESSAGE_TIMEOUT_MS,
    **extra: Any,
) -> dict[str, Any]:
    """The one producer configuration every armorflow producer uses.

    Idempotent with ``acks=all`` (a retried send never duplicates or reorders a
    profile's messages), zstd (event arrays are repetitive JSON: it shrinks them most),
    and murmur2 keys as Java clients hash them, so a profile lands in the same partition
    number of every topic whichever client wrote it. ``extra`` overrides any of them.
    """
    conf = settings.librdkafka(
        **{
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "zstd",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "partitioner": "murmur2_random",
            "message.timeout.ms": message_timeout_ms,
            "queue.buffering.max.kbytes": 262_144,
            "reconnect.backoff.max.ms": 2_000,
            # Connection failures reach error_cb or the delivery report; librdkafka's own
            # log would repeat each refused reconnect of an outage on stderr.
            "log_level": 2,
        }
    )
    conf.update(extra)
    return conf


#: Exit status of a verb that could not reach Kafka (1: bad input, 2: usage).
EXIT_KAFKA_UNREACHABLE = 3
#: How long a one-shot verb waits for Kafka before it says so.
PROBE_TIMEOUT_S = 5.0


class DeliveryError(RuntimeError):
    """Messages could not be delivered to the broker."""


class KafkaUnreachable(RuntimeError):
    """No broker answered; the message names the address and the setting to change."""


def probe(settings: KafkaSettings, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Ask the brokers for their metadata once; :class:`KafkaUnreachable` if none answers.

    The client's own logging is off: a refused or unresolvable address would otherwise
    print a line per reconnect attempt until the timeout."""
    from confluent_kafka.admin import AdminClient

    client = AdminClient(settings.librdkafka(**{"log_level": 0, "socket.timeout.ms": 3_000}))
    try:
        client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnreachable(
            f"cannot reach Kafka at {settings.bootstrap_servers} within {timeout_s:.0f} s "
            f"({_short(exc)}); set --bootstrap-servers or ARMORFLOW_BOOTSTRAP_SERVERS, and "
            "TLS/SASL with -X or ARMORFLOW_KAFKA_OPTIONS") from None


def _short(exc: KafkaException) -> str:
    error: Any = exc.args[0] if exc.args else None
    text = error.str() if error is not None and hasattr(error, "str") else str(exc)
    return str(text).split(":")[0].strip() or "no answer"


@dataclass
class EventProducer:
    """Publishes schema events, batched per (kind, profile) into JSON-array messages."""

    settings: KafkaSettings
    batch_size: int = DEFAULT_BATCH
    extra: dict[str, Any] = field(default_factory=dict)
    sent_events: int = 0
    sent_messages: int = 0
    failed_messages: int = 0
    _pending: dict[tuple[str, str], list[Event]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self._producer = Producer(producer_config(self.settings, **self.extra))

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed_messages += 1
            log.error("delivery failed for %s: %s", msg.topic(), err)

    def publish(self, event: Event) -> None:
        key = (event["kind"], event["profile"])
        pending = self._pending[key]
        pending.append(event)
        if len(pending) >= self.batch_size:
            self._send(key, pending)
            self._pending[key] = []

    def publish_many(self, events: Iterable[Event]) -> None:
        for event in events:
            self.publish(event)

    def _send(self, key: tuple[str, str], events: list[Event]) -> None:
        kind, profile = key
        value = orjson.dumps(events if len(events) > 1 else events[0])
        while True:
            try:
                self._producer.produce(
                    event_topic(kind), value=value, key=profile.encode(),
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: let librdkafka drain it, then retry.
                self._producer.poll(0.1)
        self._producer.poll(0)
        self.sent_events += len(events)
        self.sent_messages += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        for key, events in self._pending.items():
            if events:
                self._send(key, events)
        self._pending.clear()
        left = self._producer.flush(timeout_s)
        if left:
            raise DeliveryError(f"{left} message(s) not delivered within {timeout_s}s")
        if self.failed_messages:
            raise DeliveryError(f"{self.failed_messages} message(s) failed delivery")

    def produce_raw(self, topic: str, key: str, value: bytes) -> None:
        """Send one ready-made message (control events, models, status)."""
        self._producer.produce(topic, value=value, key=key.encode(), on_delivery=self._on_delivery)
        self._producer.poll(0)


#: librdkafka pre-fetches up to 64 MiB per partition by default: with armorflow's 32
#: event partitions a reader of a backlog would hold 2 GiB before it decoded a message.
#: 4 MiB per partition bounds that at 128 MiB and still keeps the pipe full.
CONSUMER_QUEUE: Final[dict[str, Any]] = {
    "queued.max.messages.kbytes": 4_096,
    "queued.min.messages": 1_000,
    "fetch.max.bytes": 16 << 20,
    "max.partition.fetch.bytes": 2 << 20,
}


def make_consumer(
    settings: KafkaSettings, group_id: str, *, from_beginning: bool = True, **extra: Any
) -> Consumer:
    conf = settings.librdkafka(
        **{
            "group.id": group_id,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **CONSUMER_QUEUE,
        }
    )
    conf.update(extra)
    return Consumer(conf)


def decode_events(value: bytes, rejects: Rejects) -> list[Event]:
    """The valid events of one message; invalid ones are counted in ``rejects``."""
    try:
        items = decode_value(value)
    except EventError as exc:
        rejects.add(exc)
        return []
    out: list[Event] = []
    for item in items:
        try:
            out.append(validate(item))
        except EventError as exc:
            rejects.add(exc)
    return out


def consume_until_idle(
    consumer: Consumer,
    rejects: Rejects,
    *,
    idle_s: float = 2.0,
    max_events: int | None = None,
    commit: bool = False,
    join_s: float = 30.0,
) -> Iterator[Event]:
    """Yield events until the assigned partitions stay idle for ``idle_s``.

    With ``commit``, offsets are committed for what was actually yielded: a message cut
    short by ``max_events`` is not committed, so it is delivered again (at least once).
    """
    import time

    from confluent_kafka import TopicPartition

    done: dict[tuple[str, int], int] = {}

    def _commit() -> None:
        if commit and done:
            offsets = [TopicPartition(t, p, o) for (t, p), o in done.items()]
            consumer.commit(offsets=offsets, asynchronous=False)

    last = time.monotonic()
    seen = 0
    assigned = False
    try:
        while True:
            waited = time.monotonic() - last
            if waited >= idle_s and (assigned or waited > join_s):
                break
            msgs = consumer.consume(num_messages=500, timeout=0.2)
            if not assigned and consumer.assignment():
                # The idle clock starts once the group gave us partitions: a join can take
                # seconds on some brokers.
                assigned = True
                last = time.monotonic()
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                last = time.monotonic()
                events = decode_events(msg.value() or b"", rejects)
                if not events:
                    done[_tp(msg)] = (msg.offset() or 0) + 1
                for i, event in enumerate(events, start=1):
                    if i == len(events):
                        # The caller holds the message's last event once it gets it: the
                        # message is consumed even if the caller stops right there.
                        done[_tp(msg)] = (msg.offset() or 0) + 1
                    yield event
                    seen += 1
                    if max_events is not None and seen >= max_events:
                        return
            if msgs:
                _commit()
    finally:
        _commit()


def _tp(msg: Any) -> tuple[str, int]:
    return (msg.topic() or "", msg.partition() or 0)

"""Publish agent events to Kafka without losing them when the broker goes away.

Events are batched per (kind, profile) into one JSON-array message (consumers accept an
array or a single object, :func:`armorflow.events.decode_value`), keyed by the profile,
on the topic of their kind. The producer is idempotent with ``acks=all`` and hashes keys
with murmur2 like the Java, aiokafka and Faust clients, so a profile lands in the same
partition number of every topic.

Outage handling. A message the broker did not acknowledge within ``message.timeout.ms``
comes back through its delivery callback with an error; it then goes to the on-disk
:class:`~armorflow.agents.spool.Spool` and the publisher switches to *spooling*: new
messages queue behind it (first held in memory until the messages still in flight are
settled, so that a late failure cannot overtake them, then appended to the spool). Every
``retry_interval_s`` the oldest spooled messages are re-sent in order; when all of them are
acknowledged the publisher is back online. A restarted agent finds the spool and resumes.

Disk full. A message the spool cannot take (ENOSPC, EDQUOT, EIO) is kept in a bounded
memory buffer (``memory_buffer_bytes``, 64 MiB) behind the spool, in order, and every
``retry_interval_s`` moved to disk again; when the spool is empty and the broker answers,
the buffer is sent straight from memory. Past that bound the newest messages are dropped,
counted (``dropped_events``) and logged, like a spool at its size bound. Nothing here
raises: the agent keeps capturing through a full disk. Messages in the buffer are not
durable, so :meth:`Publisher.durable_seq` stays below them (a source re-reads them after
a crash).

Delivery guarantee: at least once. A spooled message whose re-send was acknowledged but
whose acknowledgement we did not see (a second outage, a crash between send and ack) is
sent again. The pipeline's model is a union of behaviours, so a repeat changes nothing.

Durability watermark: :meth:`Publisher.durable_seq` is the highest publish sequence number
below which every event is delivered or synced to the spool. A source commits its own read
position only up to that point (the audit checkpoint), so a crash never skips events.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, Producer

from armorflow.agents.spool import FsyncPolicy, Spool, SpoolCursor, SpoolFull, SpoolRecord
from armorflow.config import KafkaSettings
from armorflow.events import Event
from armorflow.kafka import DEFAULT_BATCH, DEFAULT_MESSAGE_TIMEOUT_MS, producer_config
from armorflow.topics import event_topic

log = logging.getLogger(__name__)

#: How long a partial batch may wait for company before it is sent.
DEFAULT_LINGER_S: Final = 0.2
DEFAULT_RETRY_INTERVAL_S: Final = 2.0
#: Spooled messages re-sent per attempt.
DRAIN_CHUNK: Final = 2_000
#: Messages held in memory while spooling starts, before they go to disk regardless.
MAX_HELD: Final = 100_000
#: Bytes of messages the disk refused that are kept in memory before the newest are dropped.
DEFAULT_MEMORY_BUFFER_BYTES: Final = 64 << 20


@dataclass
class _Batch:
    events: list[Event]
    first_seq: int
    last_seq: int
    born: float


@dataclass
class _InFlight:
    first_seq: int
    count: int


class Publisher:
    """Batching, spooling event publisher. Not thread-safe: one agent loop calls it."""

    def __init__(
        self,
        settings: KafkaSettings,
        spool_dir: Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        linger_s: float = DEFAULT_LINGER_S,
        message_timeout_ms: int = DEFAULT_MESSAGE_TIMEOUT_MS,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
        spool_max_bytes: int = 1 << 30,
        fsync: FsyncPolicy = "batch",
        memory_buffer_bytes: int = DEFAULT_MEMORY_BUFFER_BYTES,
        extra_config: dict[str, Any] | None = None,
    ):
        self.settings = settings
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.retry_interval_s = retry_interval_s
        self.memory_buffer_bytes = memory_buffer_bytes
        self._conf = producer_config(settings, message_timeout_ms=message_timeout_ms,
                                     **(extra_config or {}))
        self._conf["error_cb"] = self._on_error
        self._producer = Producer(self._conf)
        self.spool = Spool(spool_dir, max_bytes=spool_max_bytes, fsync=fsync)
        self._batches: dict[tuple[str, str], _Batch] = {}
        self._seq = 0
        self._next_msg = 0
        self._in_flight: dict[int, _InFlight] = {}
        self._held: list[tuple[SpoolRecord, int]] = []
        self._spooling = len(self.spool) > 0
        self._drain: dict[int, tuple[int, SpoolCursor | None, bool | None]] = {}
        #: The drain in progress re-sends the memory buffer, not the spool.
        self._drain_from_memory = False
        #: Messages the disk refused, oldest first, with their first sequence numbers.
        self._overflow: deque[tuple[SpoolRecord, int]] = deque()
        self._overflow_bytes = 0
        self._last_overflow_retry = 0.0
        self._disk_failing = False
        #: Lowest sequence number appended to the spool since its last successful sync.
        self._unsynced_seq: int | None = None
        self._last_attempt = 0.0
        self._recreate = False
        self.counters: dict[str, int] = defaultdict(int)
        if self._spooling:
            log.info("resuming %d spooled message(s) from %s", len(self.spool), spool_dir)

    # --- accepting events ----------------------------------------------------------------

    def publish(self, event: Event) -> int:
        """Queue one validated event; returns its sequence number (see :meth:`durable_seq`)."""
        self._seq += 1
        key = (event["kind"], event["profile"])
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch([], self._seq, self._seq, time.monotonic())
        batch.events.append(event)
        batch.last_seq = self._seq
        self.counters["published"] += 1
        if len(batch.events) >= self.batch_size:
            del self._batches[key]
            self._emit(key, batch)
        return self._seq

    def _emit(self, key: tuple[str, str], batch: _Batch) -> None:
        kind, profile = key
        value = orjson.dumps(batch.events if len(batch.events) > 1 else batch.events[0])
        record = SpoolRecord(event_topic(kind), profile.encode(), value, len(batch.events))
        if self._spooling:
            self._hold(record, batch.first_seq)
        else:
            self._produce(record, batch.first_seq)

    def _produce(self, record: SpoolRecord, first_seq: int) -> None:
        msg_id = self._next_msg
        self._next_msg += 1
        self._in_flight[msg_id] = _InFlight(first_seq, record.count)

        def delivered(err: KafkaError | None, msg: Any) -> None:
            self._on_delivery(msg_id, record, err)

        self._send(record, delivered)

    def _send(self, record: SpoolRecord, callback: Any) -> None:
        while True:
            try:
                self._producer.produce(record.topic, value=record.value, key=record.key,
                                       on_delivery=callback)
                break
            except BufferError:
                # librdkafka's queue is full (e.g. an outage building up): serve callbacks
                # so timed-out messages move to the spool and free room.
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _on_delivery(self, msg_id: int, record: SpoolRecord, err: KafkaError | None) -> None:
        flight = self._in_flight.pop(msg_id)
        if err is None:
            self.counters["delivered_messages"] += 1
            self.counters["delivered_events"] += record.count
            return
        self.counters["failed_messages"] += 1
        if err.fatal():
            self._recreate = True
        if not self._spooling:
            log.warning("broker unreachable (%s): spooling to %s", err, self.spool.directory)
        self._spooling = True
        self._to_spool(record, flight.first_seq)

    def _hold(self, record: SpoolRecord, first_seq: int) -> None:
        self._held.append((record, first_seq))
        if not self._in_flight or len(self._held) >= MAX_HELD:
            self._spool_held()

    def _spool_held(self) -> None:
        # Not fsynced here, once per message: durable_seq() and flush() sync before they
        # report anything as safe.
        held, self._held = self._held, []
        for record, first_seq in held:
            self._to_spool(record, first_seq)

    def _to_spool(self, record: SpoolRecord, first_seq: int) -> None:
        """Park a message on disk, or in memory behind earlier ones the disk refused."""
        if self._overflow or not self._park_on_disk(record, first_seq):
            self._keep_in_memory(record, first_seq)

    def _park_on_disk(self, record: SpoolRecord, first_seq: int) -> bool:
        """Append to the spool (or drop, at its size bound); False if the disk refused."""
        try:
            self.spool.append(record)
        except SpoolFull as full:
            self._drop(record, str(full))
            return True
        except OSError as exc:
            self.counters["spool_write_errors"] += 1
            if not self._disk_failing:
                log.error("spool %s cannot be written (%s): keeping messages in memory (up to "
                          "%d bytes) and retrying every %.1f s", self.spool.directory, exc,
                          self.memory_buffer_bytes, self.retry_interval_s)
            self._disk_failing = True
            return False
        if self._disk_failing:
            log.warning("spool %s is writable again", self.spool.directory)
            self._disk_failing = False
        self.counters["spooled_messages"] += 1
        self.counters["spooled_events"] += record.count
        if self._unsynced_seq is None or first_seq < self._unsynced_seq:
            self._unsynced_seq = first_seq
        return True

    @staticmethod
    def _memory_size(record: SpoolRecord) -> int:
        return len(record.value) + len(record.key) + len(record.topic)

    def _keep_in_memory(self, record: SpoolRecord, first_seq: int) -> None:
        size = self._memory_size(record)
        if self._overflow_bytes + size > self.memory_buffer_bytes:
            self._drop(record, f"spool {self.spool.directory} cannot be written and the memory "
                               f"buffer is full ({self.memory_buffer_bytes} bytes)")
            return
        self._overflow.append((record, first_seq))
        self._overflow_bytes += size
        self.counters["memory_buffered_messages"] += 1

    def _drop(self, record: SpoolRecord, why: str) -> None:
        # Bounded means something gives: the newest events, counted and logged loudly
        # (the first time and every 1000th), never silently.
        self.counters["dropped_events"] += record.count
        self.counters["dropped_messages"] += 1
        if self.counters["dropped_messages"] % 1000 == 1:
            log.error("%s; %d event(s) dropped so far", why, self.counters["dropped_events"])

    def _release_overflow(self, messages: int) -> None:
        """Forget the oldest ``messages`` of the memory buffer (written or delivered)."""
        for _ in range(messages):
            record, _ = self._overflow.popleft()
            self._overflow_bytes -= self._memory_size(record)

    def _retry_overflow(self) -> None:
        """Move the memory buffer to disk, oldest first, until the disk refuses again."""
        self._last_overflow_retry = time.monotonic()
        moved = 0
        for record, first_seq in self._overflow:
            if not self._park_on_disk(record, first_seq):
                break
            moved += 1
        self._release_overflow(moved)
        if moved:
            log.info("moved %d message(s) from memory to the spool; %d still in memory",
                     moved, len(self._overflow))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal producer error: %s (the producer will be recreated)", err)
            self._recreate = True
        elif err.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            log.warning("producer error: %s", err)

    # --- the loop --------------------------------------------------------------------------

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks, send lingering batches, retry the spool when due."""
        self._producer.poll(timeout_s)
        now = time.monotonic()
        for key in [k for k, b in self._batches.items() if now - b.born >= self.linger_s]:
            self._emit(key, self._batches.pop(key))
        if self._held and not self._in_flight:
            self._spool_held()
        if (self._overflow and not (self._drain and self._drain_from_memory)
                and now - self._last_overflow_retry >= self.retry_interval_s):
            self._retry_overflow()
        if self._recreate and not self._in_flight and not self._drain:
            self._producer = Producer(self._conf)
            self._recreate = False
            self.counters["producer_recreated"] += 1
        self._settle_drain()
        if (self._spooling and not self._drain and not self._in_flight and not self._held
                and now - self._last_attempt >= self.retry_interval_s):
            self._start_drain()

    def _start_drain(self) -> None:
        self._last_attempt = time.monotonic()
        chunk: list[tuple[SpoolRecord, SpoolCursor | None]] = []
        chunk += self.spool.peek(DRAIN_CHUNK)
        # The memory buffer comes after the spool: it is sent once the spool is empty.
        self._drain_from_memory = not chunk
        if not chunk:
            chunk += [(record, None) for record, _ in itertools.islice(self._overflow, DRAIN_CHUNK)]
        if not chunk:
            self._spooling = False
            log.info("spool drained: back online")
            return
        for index, (record, cursor) in enumerate(chunk):
            self._drain[index] = (record.count, cursor, None)

            def delivered(err: KafkaError | None, msg: Any, index: int = index) -> None:
                count, cursor, _ = self._drain[index]
                self._drain[index] = (count, cursor, err is None)
                if err is not None and err.fatal():
                    self._recreate = True

            self._send(record, delivered)

    def _settle_drain(self) -> None:
        if not self._drain or any(ok is None for _, _, ok in self._drain.values()):
            return
        acked = 0
        through: SpoolCursor | None = None
        for index in sorted(self._drain):
            count, cursor, ok = self._drain[index]
            if not ok:
                break  # keep order: the first failure and all after it stay spooled
            acked += 1
            through = cursor
            self.counters["resent_messages"] += 1
            self.counters["delivered_messages"] += 1
            self.counters["delivered_events"] += count
        failed = len(self._drain) - acked
        self._drain.clear()
        if self._drain_from_memory:
            self._release_overflow(acked)
        elif through is not None:
            self.spool.ack(through, acked)
        if failed:
            self.counters["failed_resends"] += failed
            log.info("broker still unreachable: %d spooled message(s) wait",
                     len(self.spool) + len(self._overflow))
        elif len(self.spool) == 0 and not self._held and not self._overflow:
            self._spooling = False
            log.info("spool drained: back online")
        else:
            self._last_attempt = 0.0  # more to send and the broker answers: go on now

    # --- barriers ----------------------------------------------------------------------

    def durable_seq(self) -> int:
        """Every event with a sequence number <= this is delivered or synced to the spool."""
        # Failed messages appended by delivery callbacks become durable.
        synced = self._sync_spool()
        unsettled = [b.first_seq for b in self._batches.values()]
        unsettled += [f.first_seq for f in self._in_flight.values()]
        unsettled += [seq for _, seq in self._held]
        unsettled += [seq for _, seq in self._overflow]
        if not synced and self._unsynced_seq is not None:
            unsettled.append(self._unsynced_seq)
        return min(unsettled) - 1 if unsettled else self._seq

    def _sync_spool(self) -> bool:
        """fsync the spool; False (logged, not raised) when the disk refuses."""
        try:
            self.spool.sync()
        except OSError as exc:
            self.counters["spool_sync_errors"] += 1
            if self.counters["spool_sync_errors"] % 100 == 1:
                log.error("spool %s: fsync failed (%s); its newest messages are not durable yet",
                          self.spool.directory, exc)
            return False
        self._unsynced_seq = None
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Send everything now and wait: True when all is delivered, False if some is spooled.

        Returns within ``timeout`` (plus one poll) either way; spooled messages are synced.
        """
        for key in list(self._batches):
            self._emit(key, self._batches.pop(key))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.05)
            if not self._in_flight and not self._held and not self._drain:
                if not self._spooling:
                    break
                if time.monotonic() - self._last_attempt < self.retry_interval_s:
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        self._sync_spool()
        return not self._spooling and not self._in_flight and not self._batches

    def close(self, timeout: float = 30.0) -> None:
        """Flush what can be delivered within ``timeout``; the rest stays in the spool."""
        self.flush(timeout)
        # Messages still in flight would be lost with the producer: park them.
        if self._in_flight or self._drain:
            # Purged messages come back through their callbacks as failures, so normal
            # ones land in the spool and re-sends stay in it.
            self._producer.purge()
            self._producer.poll(0)
        if self._held:
            self._spool_held()
        if self._overflow:
            self._retry_overflow()
        for record, _ in self._overflow:
            self._drop(record, f"closing with messages the spool {self.spool.directory} "
                               f"could not take (disk full?)")
        self._release_overflow(len(self._overflow))
        self.spool.close()

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters,
            "spooling": self._spooling,
            "spool_messages": len(self.spool),
            "spool_bytes": self.spool.size_bytes,
            "spool_corrupt_records": self.spool.corrupt_records,
            "spool_cursor_corrections": self.spool.cursor_corrections,
            "spool_cursor_save_errors": self.spool.cursor_save_errors,
            "memory_messages": len(self._overflow),
            "memory_events": sum(record.count for record, _ in self._overflow),
            "memory_bytes": self._overflow_bytes,
            "in_flight_messages": len(self._in_flight) + len(self._drain),
            "pending_events": sum(len(b.events) for b in self._batches.values()),
        }

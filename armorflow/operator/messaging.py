"""The operator's Kafka side: control events and targets out, pipeline status in."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError

from armorflow.config import KafkaSettings
from armorflow.control import Control
from armorflow.kafka import EventProducer, make_consumer
from armorflow.topics import CONTROL_TOPIC, STATUS_TOPIC, TARGETS_TOPIC

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusReport:
    """One message of ``armorflow.status`` as the operator uses it."""

    profile: str
    phase: str
    ts: int
    counts: dict[str, int]
    #: Why, for a Failed report (the pipeline's words).
    message: str = ""


class StatusError(ValueError):
    """A status message the operator cannot read."""


def parse_status(value: bytes) -> StatusReport:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise StatusError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StatusError("a status message is a JSON object")
    profile, phase, ts = data.get("profile"), data.get("phase"), data.get("ts")
    if not isinstance(profile, str) or not profile:
        raise StatusError("profile must be a non-empty string")
    if not isinstance(phase, str) or not phase:
        raise StatusError("phase must be a non-empty string")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise StatusError("ts must be an integer (ns since the epoch)")
    raw_counts = data.get("counts")
    counts = {
        str(k): v for k, v in (raw_counts.items() if isinstance(raw_counts, dict) else ())
        if isinstance(v, int) and not isinstance(v, bool)
    }
    message = data.get("message")
    return StatusReport(profile=profile, phase=phase, ts=ts, counts=counts,
                        message=message[:1024] if isinstance(message, str) else "")


class ControlPublisher:
    """Sends control events and targets; ``flush`` returns once the broker has them."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._producer = EventProducer(settings)
        self.controls_sent = 0
        self.targets_sent = 0

    def control(self, control: Control) -> None:
        self._producer.produce_raw(CONTROL_TOPIC, control.profile, control.encode())
        self.controls_sent += 1

    def targets(self, profile: str, value: dict[str, Any]) -> None:
        self._producer.produce_raw(TARGETS_TOPIC, profile, orjson.dumps(value))
        self.targets_sent += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout_s)


class StatusListener:
    """Reads ``armorflow.status`` from the beginning in a thread, handing reports on.

    The topic is compacted and small (one record per profile), so every operator start
    re-reads it whole; stale reports are recognised by their timestamp, not by offsets.
    """

    def __init__(self, settings: KafkaSettings, on_report: Callable[[StatusReport], None],
                 group_id: str = "armorflow-operator") -> None:
        self._settings = settings
        self._on_report = on_report
        self._group_id = group_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-listener", daemon=True)
        self.received = 0
        self.rejected = 0
        self.error: BaseException | None = None

    def start(self) -> StatusListener:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        consumer = make_consumer(self._settings, self._group_id, from_beginning=True)
        try:
            consumer.subscribe([STATUS_TOPIC])
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() not in (KafkaError._PARTITION_EOF,
                                          KafkaError.UNKNOWN_TOPIC_OR_PART):
                        log.warning("status topic: %s", err)
                    continue
                value = msg.value()
                if value is None:
                    continue  # a tombstone: the profile's status was dropped
                try:
                    report = parse_status(value)
                except StatusError as exc:
                    self.rejected += 1
                    log.warning("skipped a status message (%d so far): %s", self.rejected, exc)
                    continue
                self.received += 1
                self._on_report(report)
        except BaseException as exc:  # surfaced through .error and the health check
            self.error = exc
            log.exception("status listener stopped")
        finally:
            consumer.close()

"""Helpers for the pipeline tests: real worker processes, events, and model readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from armorflow.broker import EmbeddedBroker
from armorflow.control import ControlType, make_control
from armorflow.events import Event, make_event
from armorflow.kafka import EventProducer
from armorflow.topics import CONTROL_TOPIC, MODELS_TOPIC, STATUS_TOPIC
from support.waiting import wait_for

ARMORFLOW = str(Path(sys.executable).parent / "armorflow")
#: Real temp-file names, as Python's tempfile makes them (tmp + 8 random characters).
_TEMP_NAMES = tempfile._get_candidate_names()


@dataclass
class WorkerProcess:
    """``armorflow pipeline`` as a real child process."""

    broker: EmbeddedBroker
    app_id: str
    workdir: Path
    grace_s: float = 2.0
    extra: list[str] = field(default_factory=list)
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    proc: subprocess.Popen[bytes] | None = None
    n: int = 0

    def start(self) -> WorkerProcess:
        self.n += 1
        # One log and one data dir per process: two workers of one app (one group) must
        # not share them, or one's "Worker ready" would answer the other's wait_ready.
        log = (self.workdir / f"{self.app_id}-{self.instance}-{self.n}.log").open("wb")
        env = {**os.environ, "ARMORFLOW_STATE_DIR": str(self.workdir / "state")}
        self.log_path = Path(log.name)
        self.proc = subprocess.Popen(
            [ARMORFLOW, "pipeline", "-b", self.broker.bootstrap_servers, "--app-id", self.app_id,
             "--grace-s", str(self.grace_s), "--loglevel", "info",
             "--instance-id", self.instance,
             *(["--fetch-pacing"] if self.broker.impl == "noida" else []),
             "--data-dir", str(self.workdir / f"data-{self.app_id}-{self.instance}-{self.n}"),
             *self.extra],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "Worker ready" in text:
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{text[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def control(
    broker: EmbeddedBroker, type_: ControlType, profile: str, **kw: Any
) -> None:
    producer = EventProducer(broker.settings())
    producer.produce_raw(CONTROL_TOPIC, profile, make_control(type_, profile, **kw).encode())
    producer.flush()


def publish(broker: EmbeddedBroker, events: Iterable[Event], batch: int = 200) -> int:
    producer = EventProducer(broker.settings(), batch_size=batch)
    producer.publish_many(events)
    producer.flush()
    return producer.sent_events


def workload(profile: str, ts0: int, *, nodes: int = 3, replicas: int = 2) -> list[Event]:
    """What a small workload does on several nodes and replicas: overlapping behaviour,
    some of it only on one replica, with random temp names to collapse."""
    events: list[Event] = []
    for n in range(nodes):
        for r in range(replicas):
            common = dict(node=f"node-{n}", profile=profile, namespace="default",
                          pod=f"web-{n}-{r}", container="c0", container_id=f"cid{n}{r}",
                          comm="sh")
            t = ts0 + (n * replicas + r) * 1000
            events += [
                make_event("exec", ts=t, pid=100 + r, path="/usr/bin/id", **common),
                make_event("exec", ts=t + 1, pid=101, path=f"/usr/bin/tool{n}", **common),
                make_event("file", ts=t + 2, pid=102, path="/etc/passwd", perms="r",
                           owner=False, **common),
                make_event("file", ts=t + 3, pid=102, path=f"/root/c{r}", perms="w",
                           owner=True, **common),
                make_event("file", ts=t + 4, pid=102, path=f"/proc/{1000 + n}/status",
                           perms="r", owner=True, **common),
                make_event("file", ts=t + 5, pid=102, path=f"/tmp/tmp{next(_TEMP_NAMES)}",
                           perms="rw", owner=True, **common),
                make_event("syscall", ts=t + 6, pid=102, name="openat", **common),
                make_event("syscall", ts=t + 7, pid=102, name="getpid",
                           **common),
                make_event("syscall", ts=t + 8, pid=102, name="unshare" if n == 2 else "read",
                           **common),
                make_event("capability", ts=t + 9, pid=102, name="sys_admin" if n == 2
                           else "chown", **common),
                make_event("network", ts=t + 10, pid=102, family="inet", sock_type="stream",
                           protocol=6, **common),
                make_event("signal", ts=t + 11, pid=102, signal="SIGTERM", peer="unconfined",
                           direction="receive", **common),
                make_event("mount", ts=t + 12, pid=102, op="umount", path="/mnt", fstype="",
                           **common),
            ]
    return events


def read_topic_raw(broker: EmbeddedBroker, topic: str) -> list[tuple[str, bytes]]:
    """Every (key, raw value) of a topic, read by partition assignment (no group)."""
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap_servers, "group.id": unique("reader"),
        "enable.auto.commit": False, "enable.partition.eof": True,
    })
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = [TopicPartition(topic, p, 0) for p in md.partitions]
    consumer.assign(parts)
    eof: set[int] = set()
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + 20
    while len(eof) < len(parts) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition() or 0)
                continue
            raise AssertionError(str(err))
        if msg.value() is not None:
            out.append(((msg.key() or b"").decode(), msg.value() or b""))
    consumer.close()
    return out


def read_topic(broker: EmbeddedBroker, topic: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (key, JSON value) of a topic (null values left out)."""
    return [(key, orjson.loads(value)) for key, value in read_topic_raw(broker, topic)]


def wait_for_message(
    broker: EmbeddedBroker, topic: str, predicate: Callable[[dict[str, Any]], bool],
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """The first message on ``topic`` (read from the start) that ``predicate`` accepts."""
    return wait_for(f"a matching message on {topic}",
                    lambda: next((v for _k, v in read_topic(broker, topic) if predicate(v)), None),
                    timeout_s, interval_s=0.5)


def completed(
    broker: EmbeddedBroker, profile: str, timeout_s: float = 60.0, source: str | None = None
) -> dict[str, Any]:
    """The first Completed status of ``profile`` (from pipeline ``source``, if given)."""
    return wait_for_message(
        broker, STATUS_TOPIC,
        lambda v: v.get("profile") == profile and v.get("phase") == "Completed"
        and (source is None or v.get("source") == source),
        timeout_s,
    )


def model_docs(broker: EmbeddedBroker, profile: str) -> list[dict[str, Any]]:
    return [v for k, v in read_topic(broker, MODELS_TOPIC) if k == profile]

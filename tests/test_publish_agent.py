"""The agent end to end: audit log -> attribution -> Kafka, restarted without repeats."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from armorflow.agents.agent import Agent, AgentOptions, build_agent
from armorflow.agents.attribution import Target
from armorflow.broker import EmbeddedBroker
from armorflow.config import KafkaSettings
from armorflow.events import Rejects
from armorflow.kafka import consume_until_idle, make_consumer
from armorflow.topics import EVENT_TOPICS, TARGETS_TOPIC

SHARED = Path(__file__).resolve().parents[2] / "shared"
VARMOR_LINES = SHARED / "data" / "audit" / "varmor" / "varmor_test_audit_lines.log"

pytestmark = pytest.mark.broker


def seccomp_line(i: int, label: str) -> bytes:
    return (
        f"type=SECCOMP msg=audit(1700000000.{i % 1000:03d}:{i}): auid=4294967295 uid=0 gid=0 "
        f"ses=4294967295 subj=={label} (complain) pid={4_000_000 + i} comm=\"w\" exe=\"/w\" "
        f"sig=0 arch=c000003e syscall={12 + i} compat=0 ip=0x7f code=0x7ffc0000\n"
    ).encode()


def profile_pids(settings: KafkaSettings, profile: str) -> list[int]:
    """The pids of every event of ``profile`` on the event topics, from the beginning."""
    consumer = make_consumer(settings, f"check-{uuid.uuid4().hex}")
    consumer.subscribe(list(EVENT_TOPICS))
    rejects = Rejects()
    try:
        pids = [int(e["pid"]) for e in consume_until_idle(consumer, rejects, idle_s=3.0)
                if e["profile"] == profile]
    finally:
        consumer.close()
    assert rejects.count == 0, rejects.samples
    return pids


def run_for(agent: Agent, until: float) -> threading.Thread:
    thread = threading.Thread(target=agent.run, args=(until,), daemon=True)
    thread.start()
    return thread


def test_agent_publishes_attributed_audit_events_and_resumes(
    noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    from_topic = f"varmor-demo-demo-4-{suffix}"  # announced on armorflow.targets
    from_file = f"varmor-cluster-varmor-demo-4-{suffix}"  # given as a targets file
    # The reference lines, relabelled to this run's unique profile names.
    reference = VARMOR_LINES.read_bytes()
    reference = reference.replace(b"varmor-cluster-varmor-demo-4", from_file.encode())
    reference = reference.replace(b"varmor-demo-demo-4", from_topic.encode())
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    targets_file = tmp_path / "targets.json"
    targets_file.write_bytes(b"[" + Target(from_file).to_json() + b"]")
    producer = Producer(noida_broker.settings().librdkafka())
    producer.produce(TARGETS_TOPIC, key=from_topic.encode(), value=Target(from_topic).to_json())
    assert producer.flush(10) == 0

    opts = AgentOptions(settings=noida_broker.settings(), state_dir=tmp_path / "state",
                        node="node-a", audit_log_paths=str(log), targets_file=targets_file)
    agent = build_agent(opts)
    # Wait until the operator's target arrived before the records are written.
    deadline = time.monotonic() + 20
    while agent.targets is not None and from_topic not in agent.targets:
        assert time.monotonic() < deadline, "target from the topic never arrived"
        agent.step(0.05)
    thread = run_for(agent, 30)
    with log.open("ab") as f:
        f.write(reference)
        for i in range(200):
            f.write(seccomp_line(i, from_file))
    deadline = time.monotonic() + 20
    while agent.counters.published < 202 and time.monotonic() < deadline:
        time.sleep(0.1)
    agent.stop()
    thread.join(10)
    agent.close()
    stats = agent.stats()
    # The ALLOWED line and its kern.log twin are one behaviour: published once.
    assert stats["published"] == 202 and stats["deduplicated"] == 1, stats
    # 12 reference records: 7 SECCOMP (1 labelled with our profile), 3 ALLOWED/AUDIT
    # AppArmor (2 ours), 2 DENIED (not modeled).
    assert stats["sources"][0]["denied"] == 2
    assert stats["unattributed"] == 7

    # Restart on the same state dir: only the new lines are read.
    with log.open("ab") as f:
        for i in range(200, 250):
            f.write(seccomp_line(i, from_file))
    second = build_agent(opts)
    thread = run_for(second, 30)
    deadline = time.monotonic() + 20
    while second.counters.published < 50 and time.monotonic() < deadline:
        time.sleep(0.1)
    second.stop()
    thread.join(10)
    second.close()
    assert second.counters.published == 50

    topic_pids = profile_pids(noida_broker.settings(), from_topic)
    assert topic_pids == [3711187]
    file_pids = profile_pids(noida_broker.settings(), from_file)
    expected = [698839] + [4_000_000 + i for i in range(250)]
    assert sorted(file_pids) == sorted(expected)
    assert max(Counter(file_pids).values()) == 1  # nothing repeated across the restart


@pytest.mark.root
def test_agent_on_netlink_publishes_real_seccomp_records(
    noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """No audit log on this machine: the agent reads the kernel's netlink group."""
    if os.geteuid() != 0:
        pytest.fail("needs root (CAP_AUDIT_READ)")
    profile = f"local-{uuid.uuid4().hex[:6]}"
    opts = AgentOptions(settings=noida_broker.settings(), state_dir=tmp_path / "state",
                        node="node-b", audit_log_paths=str(tmp_path / "missing.log"),
                        local_profile=profile)
    agent = build_agent(opts)
    thread = run_for(agent, 30)
    code = ("import os, seccomp\nf = seccomp.SyscallFilter(seccomp.ALLOW)\n"
            "f.add_rule(seccomp.LOG, 'getcwd')\nf.load()\nos.getcwd()\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    assert child.wait(30) == 0
    deadline = time.monotonic() + 15
    while agent.counters.published < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    agent.stop()
    thread.join(10)
    agent.close()
    assert agent.stats()["sources"][0]["mode"] == "netlink"
    assert child.pid in profile_pids(noida_broker.settings(), profile)
    assert orjson.dumps(agent.stats())  # the stats are JSON-ready


def test_deduplication_is_per_behaviour_and_bounded() -> None:
    from armorflow.agents.agent import EventDeduplicator
    from armorflow.events import make_event

    def ev(profile: str, name: str, pid: int) -> dict[str, object]:
        return make_event("syscall", profile=profile, name=name, pid=pid, ts=pid)

    dedup = EventDeduplicator(capacity=2)
    assert dedup.first_time(ev("p", "openat", 1))
    assert not dedup.first_time(ev("p", "openat", 2))  # same behaviour, other process
    assert dedup.first_time(ev("q", "openat", 3))  # same behaviour, other profile
    assert dedup.first_time(ev("p", "read", 4))  # evicts the oldest (p, openat)
    assert dedup.first_time(ev("p", "openat", 5))  # evicted: sent again, harmlessly
    file_a = make_event("file", profile="p", path="/a", perms="r", owner=True)
    file_w = make_event("file", profile="p", path="/a", perms="w", owner=True)
    assert dedup.first_time(file_a) and dedup.first_time(file_w)
    assert dedup.dropped == 1
    dedup.clear()
    assert dedup.first_time(file_a)


@pytest.mark.slow
def test_agent_verb_killed_and_restarted_skips_nothing(
    noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """`armorflow agent` as a process: SIGKILL mid-run, restart, every event arrives."""
    profile = f"crash-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "audit.log"
    log.write_bytes(b"")
    targets_file = tmp_path / "targets.json"
    targets_file.write_bytes(b"[" + Target(profile).to_json() + b"]")
    command = [
        sys.executable, "-m", "armorflow.cli", "agent", "-b", noida_broker.bootstrap_servers,
        "--state-dir", str(tmp_path / "state"), "--audit-log-paths", str(log),
        "--targets-file", str(targets_file), "--no-targets-topic", "--node", "n-crash",
    ]
    first = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "state" / "audit.checkpoint").exists():
            assert time.monotonic() < deadline and first.poll() is None, "agent did not start"
            time.sleep(0.1)
        with log.open("ab") as f:
            for i in range(150):
                f.write(seccomp_line(i, profile))
        time.sleep(2.0)
    finally:
        first.kill()  # no flush, no final checkpoint
        first.wait()
    committed = orjson.loads((tmp_path / "state" / "audit.checkpoint").read_bytes())["offset"]
    ends = list(itertools.accumulate(len(seccomp_line(i, profile)) for i in range(150)))
    committed_lines = sum(1 for end in ends if end <= committed)
    assert committed_lines > 0, "the running agent never committed its position"
    with log.open("ab") as f:
        for i in range(150, 250):
            f.write(seccomp_line(i, profile))
    second = subprocess.run([*command, "--duration", "4"], capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    pids = profile_pids(noida_broker.settings(), profile)
    assert set(pids) == {4_000_000 + i for i in range(250)}
    stats = orjson.loads(second.stderr.strip().splitlines()[-1])
    # The restart resumes exactly at the committed line: what the first run delivered
    # after it is read again (at least once), nothing before it is.
    assert stats["published"] == 250 - committed_lines
    assert stats["sources"][0]["malformed"] == 0

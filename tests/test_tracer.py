"""The eBPF tracer on this machine: real capture of real processes (root, BTF, tracefs).

The programs are compiled and attached once for the module (BCC takes several seconds);
each test adds its own targets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from armorflow.agents.bpf import Attribution, Tracer
from armorflow.agents.localrun import LocalContainer
from armorflow.events import Event, validate

pytestmark = [pytest.mark.root]

SHELL_DEMO = "cat /etc/hostname; id; ls /tmp; unshare -Un id || true"


def run_traced(
    tracer: Tracer, argv: list[str], profile: str, timeout_s: float = 60.0
) -> tuple[list[Event], LocalContainer]:
    """Run ``argv`` as a local container traced for ``profile``; its events and the box."""
    box = LocalContainer(argv).spawn()
    target = tracer.add_target(
        Attribution(profile=profile, namespace="ns1", pod="pod1", container="c1",
                    container_id="cid1"),
        mntns=box.mntns, pid=box.pid,
    )
    box.release()
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while box.poll() is None:
        assert time.monotonic() < deadline, f"{argv} did not finish in {timeout_s}s"
        events += tracer.poll(50)
    events += tracer.drain()
    tracer.remove_target(target)
    return [e for e in events if e["profile"] == profile], box


def of_kind(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["kind"] == kind]


@pytest.fixture
def noise(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A busy process outside any target: execs its own binary and reads its own file."""
    marker_dir = tmp_path / f"armorflow-noise-{uuid.uuid4().hex[:8]}"
    marker_dir.mkdir()
    binary = marker_dir / "noisy-true"
    shutil.copy("/usr/bin/true", binary)
    data = marker_dir / "noisy-data"
    data.write_text("noise\n")
    pids = marker_dir / "pids"
    script = (
        f"echo $$ > {pids}; "
        f"while :; do cat {data} >/dev/null; {binary} & echo $! >> {pids}; wait; done"
    )
    proc = subprocess.Popen(["sh", "-c", script])
    time.sleep(0.2)
    yield marker_dir, pids
    proc.kill()
    proc.wait()


def test_shell_demo_is_captured_and_nothing_else(
    tracer: Tracer, noise: tuple[Path, Path]
) -> None:
    marker_dir, pid_file = noise
    events, box = run_traced(tracer, ["sh", "-c", SHELL_DEMO], "demo-shell")
    assert box.poll() == 0
    for event in events:
        validate(event)
        assert (event["node"], event["namespace"], event["pod"], event["container"],
                event["container_id"]) == ("test-node", "ns1", "pod1", "c1", "cid1")

    executed = {Path(e["path"]).name for e in of_kind(events, "exec")}
    assert {"cat", "id", "ls", "unshare"} <= executed, executed

    reads = [e for e in of_kind(events, "file") if e["path"] == "/etc/hostname"]
    assert reads and all("r" in e["perms"] for e in reads)
    assert reads[0]["owner"] is True  # root reads a root-owned file

    syscalls = {e["name"] for e in of_kind(events, "syscall")}
    assert {"openat", "execve", "unshare"} <= syscalls, syscalls
    # From unshare(CLONE_NEWNET) through the LSM layer, not from the direct CAP_SYS_ADMIN
    # check every mmap of a root task makes (AppArmor never sees that one).
    capabilities = {(e["name"], e["comm"]) for e in of_kind(events, "capability")}
    assert ("sys_admin", "unshare") in capabilities

    # Nothing of the busy process outside the namespace.
    noisy_pids = {int(p) for p in pid_file.read_text().split()}
    assert noisy_pids, "the noise process did not run"
    assert not [e for e in events if str(marker_dir) in e.get("path", "")]
    assert not [e for e in events if e["pid"] in noisy_pids]
    # Every event came from the container's own processes, which all start with pid 1.
    assert box.pid in {e["pid"] for e in events}


def test_each_behaviour_is_sent_once(tracer: Tracer) -> None:
    before = tracer.stats()
    script = "for i in $(seq 200); do cat /etc/hostname >/dev/null; done"
    events, _ = run_traced(tracer, ["sh", "-c", script], "demo-dedup")
    after = tracer.stats()
    assert len([e for e in of_kind(events, "file") if e["path"] == "/etc/hostname"]) == 1
    assert len([e for e in of_kind(events, "exec") if e["path"] == "/usr/bin/cat"]) == 1
    names = [e["name"] for e in of_kind(events, "syscall")]
    assert len(names) == len(set(names))
    # The kernel saw far more than it sent: 200 execs and opens, thousands of syscalls.
    assert after.observed - before.observed > 2000
    assert after.emitted - before.emitted < 200
    assert after.drops == before.drops == 0
    # Root's cat maps memory (a direct, unmediated CAP_SYS_ADMIN check) but uses no
    # capability AppArmor would mediate.
    assert not of_kind(events, "capability")
    assert after.unmediated_capability_checks > before.unmediated_capability_checks


def test_file_permissions_and_resolved_paths(tracer: Tracer, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "r.txt").write_text("x\n")
    (work / "nobody.txt").write_text("x\n")
    os.chown(work / "nobody.txt", 65534, 65534)
    os.symlink(work / "r.txt", work / "link")
    script = (
        f"echo x > {work}/w.txt; echo y >> {work}/a.txt; cat {work}/link >/dev/null; "
        f"cat {work}/nobody.txt >/dev/null; "
        f"cd {work} && cat ./r.txt ../work/w.txt >/dev/null"
    )
    events, box = run_traced(tracer, ["sh", "-c", script], "demo-files")
    assert box.poll() == 0
    perms: dict[str, set[str]] = {}
    for e in of_kind(events, "file"):
        perms.setdefault(e["path"], set()).add(e["perms"])
    # O_WRONLY|O_CREAT|O_TRUNC -> w; O_APPEND|O_CREAT -> a plus w for the create.
    assert perms[f"{work}/w.txt"] >= {"w", "r"}
    assert perms[f"{work}/a.txt"] == {"wa"}
    # Symlinks, relative names and ".." resolve to the file AppArmor mediates.
    assert perms[f"{work}/r.txt"] == {"r"}
    assert f"{work}/link" not in perms
    assert not [p for p in perms if "/./" in p or "/../" in p]
    # owner: the file's uid against the task's fsuid (root here)
    owners = {e["path"]: e["owner"] for e in of_kind(events, "file")}
    assert owners[f"{work}/r.txt"] is True
    assert owners[f"{work}/nobody.txt"] is False


def test_names_that_differ_in_few_bytes_are_all_reported(tracer: Tracer) -> None:
    # The kernel recognises opened names by a 64-bit hash. With plain FNV steps over
    # 64-bit words, 78 pairs of these 256 names collided (differences in the top byte of
    # two words cancel; the base is 25 bytes so that both varying characters sit there),
    # and the second name of each pair was never reported.
    base = Path("/tmp/armorflow-hashtest1")
    assert len(f"{base}/") == 25
    shutil.rmtree(base, ignore_errors=True)
    names = []
    for a in "0123456789abcdef":
        (base / "data" / f"0{a}").mkdir(parents=True)
        for c in "0123456789abcdef":
            path = base / "data" / f"0{a}" / f"chunk_{c}"
            path.write_text("x\n")
            names.append(str(path))
    try:
        events, box = run_traced(tracer, ["sh", "-c", f"cat {base}/data/*/* >/dev/null"],
                                 "demo-hash")
        assert box.poll() == 0
        reported = {e["path"] for e in of_kind(events, "file")} & set(names)
        assert reported == set(names), sorted(set(names) - reported)[:5]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_long_names_are_each_reported_once(tracer: Tracer, tmp_path: Path) -> None:
    # Names past 256 bytes are not deduplicated in the kernel (their hash would need a
    # loop the verifier cannot afford); the agent publishes each (path, perms) once: two
    # files whose names share the first 300 bytes are both reported, each only once.
    deep = tmp_path / "/".join(["d" * 60] * 5)
    deep.mkdir(parents=True)
    first, second = deep / "first.txt", deep / "second.txt"
    first.write_text("1\n")
    second.write_text("2\n")
    assert len(str(first)) > 300
    script = f"for i in 1 2 3 4 5; do cat {first} {second} >/dev/null; done"
    events, box = run_traced(tracer, ["sh", "-c", script], "demo-long-names")
    assert box.poll() == 0
    reads = [e["path"] for e in of_kind(events, "file") if e["path"].startswith(str(deep))]
    assert sorted(reads) == [str(first), str(second)]


def test_an_executable_under_a_renamed_directory_is_reported_again(
    tracer: Tracer, tmp_path: Path
) -> None:
    # Renaming a directory keeps the executable's dentry but changes the path AppArmor
    # checks: the kernel's exec identity includes the walked path, so the new path is
    # reported, and each path only once.
    work = tmp_path / "work"
    work.mkdir()
    script = (f"mkdir {work}/a && cp /usr/bin/true {work}/a/prog && {work}/a/prog && "
              f"{work}/a/prog && mv {work}/a {work}/b && {work}/b/prog && {work}/b/prog")
    events, box = run_traced(tracer, ["sh", "-c", script], "demo-exec-rename")
    assert box.poll() == 0
    execs = [e["path"] for e in of_kind(events, "exec") if e["path"].startswith(str(work))]
    assert sorted(execs) == [f"{work}/a/prog", f"{work}/b/prog"]


def test_network_signal_mount_and_ptrace(tracer: Tracer) -> None:
    script = (
        "python3 -c 'import socket; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)'; "
        "sleep 30 & kill -TERM $!; wait; "
        "mount -t tmpfs none /mnt && umount /mnt; "
        "strace -o /dev/null true"
    )
    events, box = run_traced(tracer, ["sh", "-c", script], "demo-misc")
    assert box.poll() == 0
    networks = {(e["family"], e["sock_type"], e["protocol"]) for e in of_kind(events, "network")}
    assert ("inet6", "dgram", 0) in networks
    signals = {(e["signal"], e["direction"], e["peer"]) for e in of_kind(events, "signal")}
    assert ("SIGTERM", "send", "demo-misc") in signals
    assert ("SIGTERM", "receive", "demo-misc") in signals
    mounts = {(e["op"], e["path"], e["fstype"]) for e in of_kind(events, "mount")}
    assert ("mount", "/mnt", "tmpfs") in mounts
    assert ("umount", "/mnt", "") in mounts
    ptraces = {(e["mode"], e["peer"]) for e in of_kind(events, "ptrace")}
    assert ("trace", "demo-misc") in ptraces


def test_target_by_pid_follows_children_until_removed(tracer: Tracer) -> None:
    proc = subprocess.Popen(
        ["sh", "-c", "read go; cat /etc/hostname >/dev/null; read again; ls / >/dev/null"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    target = tracer.add_target(Attribution(profile="demo-pid"), pid=proc.pid)
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    events: list[Event] = []
    deadline = time.monotonic() + 20
    while not [e for e in events if e["kind"] == "exec"] and time.monotonic() < deadline:
        events += tracer.poll(50)
    time.sleep(0.3)
    events += tracer.drain()
    tracer.remove_target(target)
    proc.stdin.write(b"again\n")
    proc.stdin.close()
    proc.wait(20)
    events += tracer.drain()
    mine = [e for e in events if e["profile"] == "demo-pid"]
    executed = {e["path"] for e in of_kind(mine, "exec")}
    assert "/usr/bin/cat" in executed
    assert "/usr/bin/ls" not in executed  # ran after the target was removed
    assert {e["node"] for e in mine} == {"test-node"}


def test_trace_command_writes_schema_events(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    armorflow = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "armorflow"
    done = subprocess.run(
        [str(armorflow), "trace", "--profile", "cli-demo", "--out", str(out),
         "--namespace", "team", "--", "sh", "-c", SHELL_DEMO],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr
    from armorflow.events import read_events

    events = list(read_events(out))
    assert events
    assert {e["profile"] for e in events} == {"cli-demo"}
    assert {e["namespace"] for e in events} == {"team"}
    executed = {Path(e["path"]).name for e in of_kind(events, "exec")}
    assert {"cat", "id", "ls", "unshare"} <= executed
    assert '"drops": 0' in done.stderr


@pytest.mark.broker
@pytest.mark.slow
def test_trace_command_publishes_to_kafka(tmp_path: Path, noida_broker: object) -> None:
    from armorflow.broker import EmbeddedBroker
    from armorflow.events import Rejects
    from armorflow.kafka import consume_until_idle, make_consumer
    from armorflow.topics import EVENT_TOPICS

    assert isinstance(noida_broker, EmbeddedBroker)
    profile = f"cli-kafka-{uuid.uuid4().hex[:6]}"
    armorflow = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "armorflow"
    done = subprocess.run(
        [str(armorflow), "trace", "--profile", profile,
         "--bootstrap-servers", noida_broker.bootstrap_servers,
         "--spool-dir", str(tmp_path / "spool"), "--", "sh", "-c", SHELL_DEMO],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"all_delivered": true' in done.stderr
    consumer = make_consumer(noida_broker.settings(), f"test-{profile}")
    consumer.subscribe(list(EVENT_TOPICS))
    rejects = Rejects()
    try:
        events = [e for e in consume_until_idle(consumer, rejects, idle_s=3.0)
                  if e["profile"] == profile]
    finally:
        consumer.close()
    assert rejects.count == 0, rejects.samples
    executed = {Path(e["path"]).name for e in of_kind(events, "exec")}
    assert {"cat", "id", "ls", "unshare"} <= executed
    assert "/etc/hostname" in {e["path"] for e in of_kind(events, "file")}
    published = int(re.search(r'"published": (\d+)', done.stderr)[1])  # type: ignore[index]
    assert len(events) == published


@pytest.mark.slow
def test_a_full_ring_buffer_is_counted_not_hidden(tmp_path: Path) -> None:
    from armorflow.agents.bpf import Sizes

    small = Tracer(node="test-node", sizes=Sizes(ring_pages=1)).start()  # a 4 KiB ring
    try:
        script = f"for i in $(seq 400); do : > {tmp_path}/f$i; done"
        box = LocalContainer(["sh", "-c", script]).spawn()
        small.add_target(Attribution(profile="demo-drops"), mntns=box.mntns, pid=box.pid)
        box.release()
        assert box.wait(60) == 0  # nobody reads the ring meanwhile
        events = small.drain()
        stats = small.stats()
    finally:
        small.stop()
    created = {e["path"] for e in of_kind(events, "file")}
    assert stats.drops > 0
    # Every record the kernel wrote was read; every other one is in the drop count.
    assert stats.received == stats.emitted
    assert len(created) + stats.drops >= 400
    assert stats.published == len(events)

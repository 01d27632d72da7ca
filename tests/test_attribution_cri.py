"""Attribution through the container runtime: a real containerd, pods run over CRI.

The stub tests need nothing; the others start containerd (Debian's, from ``make setup``)
with its own socket and state, run pods the way a kubelet does, and check that the agent
names each container's pod from the runtime alone, and that the tracer, targeted through
that, captures a real container's behaviour under its pod's name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from armorflow.agents.agent import Agent, AgentOptions, TracerFeed, build_resolver
from armorflow.agents.attribution import (
    APPARMOR_OPT_OUT,
    SECCOMP_OPT_OUT,
    Attributor,
    ChainResolver,
    LabelSelector,
    StaticResolver,
    Target,
    TargetSet,
    Workload,
    parse_proc_cgroup,
)
from armorflow.agents.cri import CriClient, CriError, CriResolver, PodSandbox
from armorflow.agents.cri import api_pb2 as api
from armorflow.agents.publish import Publisher
from armorflow.broker import EmbeddedBroker
from armorflow.config import KafkaSettings
from support.containerd import Containerd

REPO = Path(__file__).resolve().parents[1]

# --- the generated stubs -----------------------------------------------------------------------


def test_committed_cri_stubs_match_the_proto(tmp_path: Path) -> None:
    """`make cri-stubs` was run after the last change to api.proto."""
    proto = "armorflow/agents/cri/api.proto"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", proto],
                   cwd=REPO, check=True)
    for name in ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py"):
        fresh = (tmp_path / "armorflow/agents/cri" / name).read_text()
        assert fresh == (REPO / "armorflow/agents/cri" / name).read_text(), name


def test_unknown_fields_from_a_newer_runtime_are_skipped() -> None:
    # A runtime speaks the whole runtime.v1; our subset must read its messages unharmed.
    sandbox = api.PodSandbox(id="p1", labels={"app": "démo"})
    sandbox.metadata.name = "web-0"
    wire = sandbox.SerializeToString()
    # runtime_handler (7) and a fixed64 field 15 that this subset does not define
    wire += bytes([7 << 3 | 2, 4]) + b"runc" + bytes([15 << 3 | 1]) + b"\0" * 8
    back = PodSandbox.from_message(api.PodSandbox.FromString(wire))
    assert (back.id, back.name, back.labels, back.ready) == ("p1", "web-0", {"app": "démo"}, True)


def test_an_unreachable_runtime_is_a_clear_error(tmp_path: Path) -> None:
    with (CriClient(f"unix://{tmp_path}/nothing.sock", timeout_s=1.0) as client,
          pytest.raises(CriError, match="ListPodSandbox")):
        client.list_pod_sandboxes()


def test_chain_asks_the_runtime_first_then_the_api_server() -> None:
    runtime = StaticResolver([Workload("a" * 64, "ns", "from-runtime", "c")])
    api = StaticResolver([Workload("a" * 64, "ns", "from-api", "c"),
                          Workload("b" * 64, "ns", "api-only", "c")])
    chain = ChainResolver([runtime, api])
    assert chain.resolve("a" * 64) == runtime.resolve("a" * 64)
    assert chain.resolve("b" * 64) == api.resolve("b" * 64)
    assert chain.resolve("c" * 64) is None
    opts = AgentOptions(settings=KafkaSettings("127.0.0.1:1"), state_dir=Path("/nonexistent"),
                        cri_endpoint="unix:///nonexistent.sock")
    assert isinstance(build_resolver(opts), CriResolver)


# --- a real containerd ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    if os.geteuid() != 0:
        pytest.fail("needs root (containerd, runc)")
    with Containerd(tmp_path_factory.mktemp("containerd")) as daemon:
        yield daemon


def wait_for_pids(daemon: Containerd, container_id: str, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = daemon.container_pids(container_id)
        if pids:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"container {container_id[:12]} has no process")


@pytest.mark.root
@pytest.mark.slow
def test_runtime_names_the_pod_of_a_running_container(containerd: Containerd) -> None:
    pod = containerd.run_pod(
        "web-0", "demo", labels={"app": "demo", "tier": "web"},
        annotations={SECCOMP_OPT_OUT + "c1": "unconfined", "note": "kept"},
    )
    try:
        cid = containerd.run_container(pod, "c1", ["/bin/sleep", "600"])
        (pid,) = wait_for_pids(containerd, cid)
        # runc's cgroup (cgroupfs driver, kubelet layout) names the container and the pod
        identity = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
        assert identity is not None
        assert (identity.container_id, identity.pod_uid) == (cid, pod.uid)

        resolver = CriResolver(CriClient(containerd.endpoint), min_refresh_s=0.0)
        workload = resolver.resolve(cid, identity.pod_uid)
        assert workload == Workload(
            container_id=cid, namespace="demo", pod="web-0", container="c1", pod_uid=pod.uid,
            labels={"app": "demo", "tier": "web"},  # the kubelet's io.kubernetes.* left out
            annotations={SECCOMP_OPT_OUT + "c1": "unconfined", "note": "kept"},
        )
        # the pause container is known as a sandbox: no workload and no refresh per lookup,
        # (the rate limit is off here)
        refreshes = resolver.refreshes
        assert resolver.resolve(pod.sandbox_id) is None
        assert resolver.refreshes == refreshes
        assert resolver.resolve("e" * 64) is None  # an unknown id does refresh
        assert resolver.refreshes == refreshes + 1

        target = Target("demo-profile", selector=LabelSelector({"app": "demo"}))
        attribution = Attributor(TargetSet([target]), resolver).for_pid(pid)
        assert attribution is not None
        assert (attribution.profile, attribution.pod, attribution.container) == (
            "demo-profile", "web-0", "c1")
        assert attribution.enforcers == {"apparmor"}  # seccomp opted out by annotation
        # the pause container is counted as what it is, not as an unknown container
        chained = Attributor(TargetSet([target]), ChainResolver([resolver, StaticResolver()]))
        assert chained.for_container(pod.sandbox_id) is None
        assert (chained.counters["sandbox"], chained.counters["unknown_container"]) == (1, 0)
    finally:
        containerd.remove_pod(pod)


@pytest.mark.root
@pytest.mark.slow
def test_exited_containers_are_filtered_by_state_and_still_resolve(
    containerd: Containerd,
) -> None:
    pod = containerd.run_pod("job-0", "demo")
    try:
        done = containerd.run_container(pod, "once", ["/bin/true"])
        running = containerd.run_container(pod, "stays", ["/bin/sleep", "600"])
        client = CriClient(containerd.endpoint)
        deadline = time.monotonic() + 10
        while not any(c.id == done and not c.running
                      for c in client.list_containers(running_only=False)):
            assert time.monotonic() < deadline, "the container did not exit"
            time.sleep(0.1)
        # the state filter reaches the runtime: only the running one comes back
        assert {c.id for c in client.list_containers() if c.sandbox_id == pod.sandbox_id} == {
            running}
        # the resolver lists every state: a container that just exited (its last events
        # may still be queued) is still named
        workload = CriResolver(client).resolve(done)
        assert workload is not None and (workload.pod, workload.container) == ("job-0", "once")
    finally:
        containerd.remove_pod(pod)


@pytest.mark.root
@pytest.mark.slow
def test_resolver_keeps_its_view_while_the_runtime_is_away(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (containerd, runc)")
    daemon = Containerd(tmp_path).start()
    try:
        pod = daemon.run_pod("api-0", "demo")
        cid = daemon.run_container(pod, "c", ["/bin/sleep", "600"])
        resolver = CriResolver(CriClient(daemon.endpoint, timeout_s=2.0), min_refresh_s=0.0)
        assert resolver.resolve(cid) is not None
        assert daemon.proc is not None
        daemon.proc.kill()  # the runtime goes away; its containers keep running
        daemon.proc.wait()
        assert resolver.resolve("f" * 64) is None  # a miss: the refresh fails, counted
        assert resolver.errors == 1
        # and the next try waits (backoff), even with no rate limit
        assert resolver.resolve("f" * 64) is None
        assert resolver.errors == 1
        workload = resolver.resolve(cid)
        assert workload is not None and workload.pod == "api-0"
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def tracer() -> Iterator[Any]:
    from armorflow.agents.bpf.tracer import Tracer

    if os.geteuid() != 0:
        pytest.fail("needs root (eBPF)")
    running = Tracer(node="node-cri").start()
    yield running
    running.stop()


@pytest.mark.root
@pytest.mark.broker
@pytest.mark.slow
def test_tracer_captures_a_containerd_container_under_its_pod(
    containerd: Containerd, tracer: Any, noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    from test_attribution_tracer import profile_events

    profile = f"cri-{uuid.uuid4().hex[:6]}"
    # Each container waits for /tmp/go, so that it acts only once the tracer follows it.
    # It then stays, so that its root can still be read through /proc.
    script = ("while [ ! -e /tmp/go ]; do sleep 0.05; done; "
              "cat /etc/hostname; id; ls /tmp >/dev/null; echo done > /tmp/finished; "
              "exec sleep 600")
    pod = containerd.run_pod(
        "demo-4-abc", "default", labels={"app": "demo-4"},
        annotations={APPARMOR_OPT_OUT + "quiet": "unconfined",
                     SECCOMP_OPT_OUT + "quiet": "unconfined"},
    )
    other = containerd.run_pod("elsewhere-0", "default", labels={"app": "other"})
    try:
        ids = {name: containerd.run_container(p, name, ["/bin/sh", "-c", script])
               for p, name in ((pod, "app"), (pod, "quiet"), (other, "stranger"))}
        pids = {name: wait_for_pids(containerd, cid)[0] for name, cid in ids.items()}
        target = Target(profile, selector=LabelSelector({"app": "demo-4"}))
        attributor = Attributor(TargetSet([target]),
                                CriResolver(CriClient(containerd.endpoint)))
        feed = TracerFeed(tracer, attributor, "node-cri", owns_tracer=False)
        agent = Agent(node="node-cri", publisher=Publisher(noida_broker.settings(),
                                                           tmp_path / "spool"),
                      sources=[], attributor=attributor, event_sources=[feed])
        closed = False
        agent.step(0.1)
        # only "app" is targeted: "quiet" opted out of both enforcers, "stranger" unmatched
        assert feed.stats()["containers"] == 1, attributor.counters
        for pid in pids.values():
            Path(f"/proc/{pid}/root/tmp/go").touch()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
                Path(f"/proc/{pid}/root/tmp/finished").exists() for pid in pids.values()):
            agent.step(0.2)
        for _ in range(10):
            agent.step(0.2)
        agent.close()
        closed = True
    finally:
        if not closed and "agent" in locals():
            agent.close()
        containerd.remove_pod(pod)
        containerd.remove_pod(other)

    events = profile_events(noida_broker.settings(), profile)
    assert events, agent.stats()
    assert {(e["pod"], e["namespace"], e["container"], e["container_id"]) for e in events} == {
        ("demo-4-abc", "default", "app", ids["app"])}
    # busybox applets are one binary: the kernel execs /bin/busybox, as AppArmor sees it
    assert {e["path"] for e in events if e["kind"] == "exec"} >= {"/bin/busybox"}
    # paths are the container's own, not the host's view of its root file system
    reads = {e["path"] for e in events if e["kind"] == "file" and "r" in e["perms"]}
    assert "/etc/hostname" in reads, reads
    assert any(e["kind"] == "file" and e["path"] == "/tmp/finished" and "w" in e["perms"]
               for e in events)
    assert {"openat", "execve"} <= {e["name"] for e in events if e["kind"] == "syscall"}


@pytest.mark.root
@pytest.mark.broker
@pytest.mark.slow
def test_two_replicas_run_by_containerd_become_one_compiling_profile(
    containerd: Containerd, tracer: Any, noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A node as a cluster has it: two replicas of a pod run by containerd, the agent
    finding them through the runtime and tracing them, a pipeline worker merging their
    behaviour into one model, and the rendered AppArmor profile compiling."""
    from support.apparmor_check import compile_check
    from support.pipeline import WorkerProcess, completed, control, model_docs, unique

    profile = unique("cri-e2e")
    worker = WorkerProcess(noida_broker, unique("cri-e2e"), tmp_path, grace_s=2.0).start()
    pods = []
    try:
        worker.wait_ready()
        control(noida_broker, "start", profile, duration_s=600)
        # replica 0 reads the hostname, replica 1 writes a file: the model needs both
        actions = ["cat /etc/hostname", "echo x > /tmp/replica-1.out"]
        pids = []
        for i, action in enumerate(actions):
            pod = containerd.run_pod(f"web-{i}", "shop", labels={"app": "web"})
            pods.append(pod)
            cid = containerd.run_container(pod, "app", ["/bin/sh", "-c", (
                "while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                f"{action}; echo done > /tmp/finished; exec sleep 600")])
            pids.append(wait_for_pids(containerd, cid)[0])
        attributor = Attributor(
            TargetSet([Target(profile, selector=LabelSelector({"app": "web"}))]),
            CriResolver(CriClient(containerd.endpoint)))
        feed = TracerFeed(tracer, attributor, "node-cri", owns_tracer=False)
        agent = Agent(node="node-cri", publisher=Publisher(noida_broker.settings(),
                                                           tmp_path / "spool"),
                      sources=[], attributor=attributor, event_sources=[feed])
        try:
            agent.step(0.1)
            assert feed.stats()["containers"] == 2, attributor.counters
            for pid in pids:
                Path(f"/proc/{pid}/root/tmp/go").touch()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(
                    Path(f"/proc/{pid}/root/tmp/finished").exists() for pid in pids):
                agent.step(0.2)
            for _ in range(5):
                agent.step(0.2)
        finally:
            agent.close()
        time.sleep(1)
        control(noida_broker, "update", profile, duration_s=0.001)  # end the window
        completed(noida_broker, profile, timeout_s=60, source=worker.app_id)
        (doc,) = [d for d in model_docs(noida_broker, profile)
                  if d["pipeline"] == worker.app_id]
    finally:
        for pod in pods:
            containerd.remove_pod(pod)
        worker.stop()
    dyn = doc["model"]["dynamicResult"]
    assert "/bin/busybox" in dyn["apparmor"]["executions"]
    files = {f["path"]: f["permissions"] for f in dyn["apparmor"]["files"]}
    assert "r" in files.get("/etc/hostname", []), files
    assert "w" in files.get("/tmp/replica-1.out", []), files
    assert {"execve", "openat"} <= set(dyn["seccomp"]["syscalls"])
    compile_check(doc["apparmor"])

"""Attribution: cgroup lines -> container ids, and target matching with opt-outs."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from armorflow.agents.attribution import (
    APPARMOR_OPT_OUT,
    SECCOMP_OPT_OUT,
    Attributor,
    LabelSelector,
    StaticResolver,
    Target,
    TargetSet,
    Workload,
    parse_cgroup_path,
    parse_proc_cgroup,
    workloads_of_pod,
)

CID = "3f1e9a6c0b7d4e21a8f5c3b2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2"
POD_UID = "5d1b3c2a-8e7f-4a6b-9c0d-1e2f3a4b5c6d"
POD_UID_ESCAPED = POD_UID.replace("-", "_")


@pytest.mark.parametrize("path, runtime, pod_uid", [
    # containerd, systemd cgroup driver (cgroup v2 unified line)
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_ESCAPED}.slice/"
     f"cri-containerd-{CID}.scope", "containerd", POD_UID),
    # containerd, cgroupfs driver
    (f"/kubepods/besteffort/pod{POD_UID}/{CID}", None, POD_UID),
    (f"/kubepods/pod{POD_UID}/{CID}", None, POD_UID),
    # cri-o, systemd driver
    (f"/kubepods.slice/kubepods-pod{POD_UID_ESCAPED}.slice/crio-{CID}.scope", "cri-o", POD_UID),
    # docker, both drivers
    (f"/system.slice/docker-{CID}.scope", "docker", None),
    (f"/docker/{CID}", None, None),
    # containerd's systemd-style path on cgroup v1 under its own service
    (f"/system.slice/containerd.service/kubepods-besteffort-pod{POD_UID_ESCAPED}.slice:"
     f"cri-containerd:{CID}", "containerd", POD_UID),
])
def test_container_cgroup_paths(path: str, runtime: str | None, pod_uid: str | None) -> None:
    identity = parse_cgroup_path(path)
    assert identity is not None
    assert (identity.container_id, identity.runtime, identity.pod_uid) == (CID, runtime, pod_uid)


@pytest.mark.parametrize("path", [
    "/", "", "/user.slice/user-0.slice/session-1.scope", "/system.slice/containerd.service",
    f"/kubepods.slice/kubepods-pod{POD_UID_ESCAPED}.slice/crio-conmon-{CID}.scope",
    f"/kubepods.slice/kubepods-pod{POD_UID_ESCAPED}.slice",
    # this machine's sandbox: a 32-hex id is not a container runtime id
    "/process_api/9f60c5605cfb439a83c9f365a26a749d",
    f"/kubepods/pod{POD_UID}/{CID[:63]}",
])
def test_host_and_non_container_paths(path: str) -> None:
    assert parse_cgroup_path(path) is None


def test_proc_cgroup_prefers_the_unified_line() -> None:
    text = (f"12:memory:/kubepods/besteffort/pod{POD_UID}/{'a' * 64}\n"
            f"1:name=systemd:/kubepods/besteffort/pod{POD_UID}/{'a' * 64}\n"
            f"0::/kubepods.slice/kubepods-pod{POD_UID_ESCAPED}.slice/cri-containerd-{CID}.scope\n")
    identity = parse_proc_cgroup(text)
    assert identity is not None and identity.container_id == CID
    v1_only = f"4:memory:/kubepods/besteffort/pod{POD_UID}/{CID}\n3:cpuset:/\n"
    identity = parse_proc_cgroup(v1_only)
    assert identity is not None and identity.container_id == CID


def test_this_machine_processes_are_host_processes() -> None:
    text = Path("/proc/self/cgroup").read_text()
    assert text.strip(), "no cgroup lines for this process"
    assert parse_proc_cgroup(text) is None
    attributor = Attributor(TargetSet(), StaticResolver())
    assert attributor.for_pid(os.getpid()) is None
    assert attributor.counters["host_process"] == 1


# --- targets ---------------------------------------------------------------------------------

DEMO_TARGET = Target.from_json("varmor-cluster-varmor-demo-4", (
    b'{"v":1,"profile":"varmor-cluster-varmor-demo-4","enforcers":["apparmor","seccomp"],'
    b'"namespaces":[],"selector":{"matchLabels":{"app":"demo-4"}},"containers":[]}'
))


def demo_pod(namespace: str, container: str, cid: str, annotations: dict[str, str]) -> Workload:
    return Workload(cid, namespace, f"demo-4-{namespace}", container, POD_UID,
                    labels={"app": "demo-4", "pod-template-hash": "6b98965dc"},
                    annotations=annotations)


def test_the_seed_demo_opt_outs() -> None:
    """demo/demo-4's c0 carries both unconfined annotations: it produces nothing."""
    opt_out = {APPARMOR_OPT_OUT + "c0": "unconfined", SECCOMP_OPT_OUT + "c0": "unconfined"}
    targets = TargetSet([DEMO_TARGET])
    resolver = StaticResolver([
        demo_pod("default", "c0", "a" * 64, {}),
        demo_pod("demo", "c0", "b" * 64, opt_out),
        demo_pod("demo", "c1", "c" * 64, opt_out),
        Workload("d" * 64, "default", "other", "c0", labels={"app": "other"}),
    ])
    attributor = Attributor(targets, resolver)
    default_c0 = attributor.for_container("a" * 64)
    assert default_c0 is not None and default_c0.profile == "varmor-cluster-varmor-demo-4"
    assert default_c0.allows("file") and default_c0.allows("syscall")
    assert default_c0.fields()["namespace"] == "default"
    assert attributor.for_container("b" * 64) is None  # opted out of everything
    demo_c1 = attributor.for_container("c" * 64)
    assert demo_c1 is not None and demo_c1.container == "c1" and demo_c1.pod == "demo-4-demo"
    assert attributor.for_container("d" * 64) is None  # labels do not match
    assert attributor.for_container("e" * 64) is None  # unknown container
    assert attributor.counters == {"no_process": 0, "host_process": 0, "sandbox": 0,
                                   "unknown_container": 1, "untargeted": 2, "attributed": 2}


def test_one_enforcer_opted_out_keeps_the_other() -> None:
    only_apparmor_out = {APPARMOR_OPT_OUT + "c0": "unconfined"}
    enforcers = DEMO_TARGET.enforcers_for(demo_pod("x", "c0", CID, only_apparmor_out))
    assert enforcers == {"seccomp"}
    # An annotation for another container, or another value, changes nothing.
    other = {APPARMOR_OPT_OUT + "c1": "unconfined", SECCOMP_OPT_OUT + "c0": "runtime/default"}
    assert DEMO_TARGET.enforcers_for(demo_pod("x", "c0", CID, other)) == {"apparmor", "seccomp"}
    # The annotation takes precedence over the containers list.
    listed = Target("p", containers=("c0",))
    assert listed.enforcers_for(demo_pod("x", "c0", CID, {
        APPARMOR_OPT_OUT + "c0": "unconfined", SECCOMP_OPT_OUT + "c0": "unconfined"})) == set()
    assert listed.enforcers_for(demo_pod("x", "c1", CID, {})) == set()
    seccomp_only = Target("p", enforcers=frozenset({"seccomp"}))
    assert seccomp_only.enforcers_for(demo_pod("x", "c0", CID, only_apparmor_out)) == {"seccomp"}


def test_namespaces_and_match_expressions() -> None:
    target = Target("p", namespaces=("prod",), selector=LabelSelector.from_json({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "edge"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
        ],
    }))

    def w(ns: str, **labels: str) -> Workload:
        return Workload(CID, ns, "pod", "c", labels=labels)

    good = {"app": "web", "tier": "edge", "team": "a"}
    assert target.enforcers_for(w("prod", **good))
    assert not target.enforcers_for(w("staging", **good))
    assert not target.enforcers_for(w("prod", **{**good, "tier": "back"}))
    assert not target.enforcers_for(w("prod", **{**good, "canary": "1"}))
    assert not target.enforcers_for(w("prod", app="web", tier="edge"))
    assert not target.enforcers_for(w("prod", **{**good, "env": "dev"}))
    assert target.enforcers_for(w("prod", **{**good, "env": "prod"}))


def test_targets_topic_messages() -> None:
    targets = TargetSet()
    targets.apply(b"varmor-cluster-varmor-demo-4", DEMO_TARGET.to_json())
    assert "varmor-cluster-varmor-demo-4" in targets
    assert Target.from_json("varmor-cluster-varmor-demo-4", DEMO_TARGET.to_json()) == DEMO_TARGET
    # Bad messages are counted and skipped; the good state survives them.
    for key, value in [
        (b"p", b"not json"), (b"p", b'{"profile": "q"}'), (None, b"{}"),
        (b"p", b'{"enforcers": ["selinux"]}'), (b"p", b'{"v": 2}'),
        (b"p", b'{"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}'),
    ]:
        targets.apply(key, value)
    assert targets.rejected == 6 and len(targets) == 1
    targets.apply(b"p2", b'{"profile": "p2", "active": true}')
    assert len(targets) == 2
    targets.apply(b"p2", b'{"profile": "p2", "active": false}')  # the window ended
    targets.apply(b"varmor-cluster-varmor-demo-4", None)  # tombstone
    assert len(targets) == 0


def test_label_fallback_for_exited_processes() -> None:
    targets = TargetSet([DEMO_TARGET])
    attributor = Attributor(targets, StaticResolver(), proc=Path("/nonexistent-proc"))
    found = attributor.for_label(123, "varmor-cluster-varmor-demo-4")
    assert found is not None and found.profile == "varmor-cluster-varmor-demo-4"
    assert found.container_id == ""
    assert attributor.for_label(123, "cri-containerd.apparmor.d") is None
    assert attributor.for_label(123, None) is None


def test_pod_status_to_workloads() -> None:
    pod = {
        "metadata": {"name": "demo-4-x", "namespace": "demo", "uid": POD_UID,
                     "labels": {"app": "demo-4"},
                     "annotations": {SECCOMP_OPT_OUT + "c0": "unconfined"}},
        "status": {"containerStatuses": [
            {"name": "c0", "containerID": f"containerd://{CID}"},
            {"name": "c1", "containerID": f"cri-o://{'f' * 64}"},
            {"name": "c2"},  # not started yet: no id
        ]},
    }
    workloads = workloads_of_pod(pod)
    assert [(w.container, w.container_id) for w in workloads] == [("c0", CID), ("c1", "f" * 64)]
    assert workloads[0].annotations == {SECCOMP_OPT_OUT + "c0": "unconfined"}


CGROUP2 = Path("/sys/fs/cgroup/unified")


@pytest.mark.root
def test_a_live_process_in_a_container_cgroup_is_attributed() -> None:
    """A real process moved into a kubelet-style cgroup v2 directory."""
    root = CGROUP2 if (CGROUP2 / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
    if os.geteuid() != 0 or not (root / "cgroup.procs").exists():
        pytest.fail("needs root and a writable cgroup v2 hierarchy")
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    pod_uid = str(uuid.uuid4())
    slice_dir = root / f"kubepods-af{cid[:6]}.slice"
    pod_dir = slice_dir / f"kubepods-af{cid[:6]}-pod{pod_uid.replace('-', '_')}.slice"
    scope = pod_dir / f"cri-containerd-{cid}.scope"
    scope.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (scope / "cgroup.procs").write_text(str(sleeper.pid))
        line = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
        assert f"cri-containerd-{cid}.scope" in line
        resolver = StaticResolver([Workload(cid, "default", "demo-4-abc", "c0", pod_uid,
                                            labels={"app": "demo-4"})])
        attributor = Attributor(TargetSet([DEMO_TARGET]), resolver)
        found = attributor.for_pid(sleeper.pid)
        assert found is not None
        assert (found.profile, found.container_id, found.pod) == (
            "varmor-cluster-varmor-demo-4", cid, "demo-4-abc")
        identity = attributor.identity_of_pid(sleeper.pid)
        assert identity is not None and identity.pod_uid == pod_uid
    finally:
        sleeper.kill()
        sleeper.wait()
        for d in (scope, pod_dir, slice_dir):
            try:
                d.rmdir()
            except OSError:
                shutil.rmtree(d, ignore_errors=True)


def test_target_version_counts_real_changes_only() -> None:
    targets = TargetSet()
    targets.apply(b"p", Target("p").to_json())
    version = targets.version
    targets.apply(b"p", Target("p").to_json())  # the operator's periodic republish
    assert targets.version == version
    targets.apply(b"p", Target("p", containers=("c1",)).to_json())
    assert targets.version == version + 1
    targets.apply(b"gone", None)  # a tombstone for an unknown profile changes nothing
    assert targets.version == version + 1


def test_the_documented_targets_value_is_what_the_agents_read() -> None:
    """docs/agents.md's targets table names exactly the keys a target carries."""
    import orjson

    text = (Path(__file__).resolve().parents[1] / "docs" / "agents.md").read_text()
    section = text.split("## Attribution", 1)[1]
    rows = [line.split("|")[1].strip() for line in section.splitlines()
            if line.startswith("| `")]
    assert {r.strip("`") for r in rows} == set(orjson.loads(Target("p").to_json()))
    example = section.split("```json", 1)[1].split("```", 1)[0]
    parsed = Target.from_json("varmor-cluster-varmor-demo-4", example.encode())
    assert parsed.namespaces == ("default", "demo") and parsed.enforcers == {"apparmor", "seccomp"}

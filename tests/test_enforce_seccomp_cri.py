"""A learned Seccomp profile applied the way a cluster applies it: through the runtime.

A busybox workload in a containerd container is traced through the agent, its model
becomes a Completed ArmorProfileModel (the file sink's YAML), ``armorflow enforce
seccomp`` installs the profile in a kubelet-style ``seccomp/`` directory, and containers
started over CRI with ``seccompProfile: Localhost`` run under it: the same workload with
another input succeeds; unshare, clone and clone3 asking for a user namespace, and mount,
are refused (EPERM, or ENOSYS for clone3), which they are not without the profile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from armorflow.agents.agent import Agent, TracerFeed
from armorflow.agents.attribution import Attributor, LabelSelector, Target, TargetSet
from armorflow.agents.cri import CriClient, CriResolver
from armorflow.agents.enforce import EnforceError, enforce_seccomp, read_model_file
from armorflow.agents.publish import Publisher
from armorflow.broker import EmbeddedBroker
from armorflow.control import PolicyRef
from armorflow.model import reduce_events
from armorflow.nsflags import CLONE_NEWUSER
from armorflow.pipeline.sink.files import FileSink
from armorflow.render import render_apparmor, render_seccomp
from armorflow.resource import CompletedModel
from support.containerd import Containerd, Pod
from support.nsprobe import build_nsprobe

pytestmark = [pytest.mark.root, pytest.mark.slow]

ARMORFLOW = str(Path(sys.executable).parent / "armorflow")
#: The workload, with its input: a file to read, a word to write, a number to print.
WORKLOAD = ("cat {file}; echo {word} > /tmp/out; cat /tmp/out; ls /tmp; "
            "/bin/nsprobe work {n}")
#: What a container under the profile tries besides its work: (command, answer wanted).
PROBES = {
    "unshare -U true": "unshare: unshare(0x10000000): Operation not permitted",
    "/bin/nsprobe unshare-user": "unshare-user EPERM",
    "/bin/nsprobe clone-user": "clone-user EPERM",
    "/bin/nsprobe clone3-user": "clone3-user ENOSYS",
    "/bin/nsprobe clone3-plain": "clone3-plain ENOSYS",
    "/bin/nsprobe mount /nonexistent": "mount EPERM",
}
#: The same requests in a container without the profile reach the kernel.
UNCONFINED = {
    "/bin/nsprobe unshare-user": "unshare-user ok",
    "/bin/nsprobe clone-user": "clone-user ok",
    "/bin/nsprobe clone3-user": "clone3-user ok",
    "/bin/nsprobe mount /nonexistent": "mount ENOENT",  # the path is looked up first
}


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    if os.geteuid() != 0:
        pytest.fail("needs root (containerd, runc)")
    probe = build_nsprobe()
    with Containerd(tmp_path_factory.mktemp("containerd"),
                    extra_files={"bin/nsprobe": probe}) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def tracer() -> Iterator[Any]:
    from armorflow.agents.bpf.tracer import Tracer

    running = Tracer(node="node-enforce").start()
    yield running
    running.stop()


def gated(workload: str) -> str:
    """A container script that runs ``workload`` once /tmp/go exists, then writes
    /tmp/finished and stays. The wait lets the tracer follow the container before the
    workload starts; the workload then starts as a fresh shell, as in an enforced run."""
    return (f"while [ ! -e /tmp/go ]; do sleep 0.05; done; "
            f"/bin/sh -c '{workload}'; echo done > /tmp/finished; exec sleep 600")


def model_workload(containerd: Containerd, tracer: Any, broker: EmbeddedBroker,
                   profile: str, spool: Path) -> list[dict[str, Any]]:
    """Run the workload in a pod the agent targets; the events it published."""
    from test_attribution_tracer import profile_events

    script = gated(WORKLOAD.format(file="/etc/hostname", word="one", n=1))
    pod = containerd.run_pod("model-0", "shop", labels={"app": "enforced"})
    try:
        cid = containerd.run_container(pod, "app", ["/bin/sh", "-c", script])
        pid = wait_for_pid(containerd, cid)
        attributor = Attributor(
            TargetSet([Target(profile, selector=LabelSelector({"app": "enforced"}))]),
            CriResolver(CriClient(containerd.endpoint)))
        feed = TracerFeed(tracer, attributor, "node-enforce", owns_tracer=False)
        agent = Agent(node="node-enforce", publisher=Publisher(broker.settings(), spool),
                      sources=[], attributor=attributor, event_sources=[feed])
        try:
            agent.step(0.1)
            assert feed.stats()["containers"] == 1, attributor.counters
            Path(f"/proc/{pid}/root/tmp/go").touch()
            deadline = time.monotonic() + 20
            while not Path(f"/proc/{pid}/root/tmp/finished").exists():
                assert time.monotonic() < deadline, "the modeled workload did not finish"
                agent.step(0.2)
            for _ in range(5):
                agent.step(0.2)
        finally:
            agent.close()
    finally:
        containerd.remove_pod(pod)
    return profile_events(broker.settings(), profile)


def wait_for_pid(containerd: Containerd, container_id: str) -> int:
    deadline = time.monotonic() + 10
    while not (pids := containerd.container_pids(container_id)):
        assert time.monotonic() < deadline, "the container has no process"
        time.sleep(0.05)
    return pids[0]


def run_to_end(containerd: Containerd, pod: Pod, name: str, script: str,
               profile_file: Path | None) -> tuple[int, list[str]]:
    cid = containerd.run_container(pod, name, ["/bin/sh", "-c", script],
                                   seccomp_localhost=profile_file)
    status = containerd.wait_exit(cid)
    return status.exit_code, containerd.container_log(pod, name)


def test_a_learned_profile_enforced_through_cri(
    containerd: Containerd, tracer: Any, noida_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    profile = f"enforced-{uuid.uuid4().hex[:6]}"
    events = model_workload(containerd, tracer, noida_broker, profile, tmp_path / "spool")
    model = reduce_events(events)[profile]
    # busybox forks through clone, the probe's thread starts through clone3: neither
    # asked for a namespace
    assert model.namespace_flags == {"clone": {0}, "clone3": {0}}, model.namespace_flags
    assert "unshare" not in model.syscalls and "mount" not in model.syscalls

    # The Completed model as the pipeline's file sink stores it, then installed for the
    # kubelet by the CLI.
    sink_dir, root = tmp_path / "models", tmp_path / "kubelet" / "seccomp"
    FileSink(sink_dir).write(CompletedModel(
        profile=profile, namespace="varmor", policy=PolicyRef("VarmorClusterPolicy", "", "p"),
        enforcer="AppArmorSeccomp", model=model,
        apparmor=render_apparmor(profile, model).text, seccomp=render_seccomp(model)))
    out = subprocess.run([ARMORFLOW, "enforce", "seccomp", "--profile", profile,
                          "--models", str(sink_dir), "--root", str(root)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    installed = json.loads(out.stdout)
    profile_file = root / "armorflow" / f"{profile}.json"
    assert installed["path"] == str(profile_file)
    assert installed["securityContext"] == {"seccompProfile": {
        "type": "Localhost", "localhostProfile": f"armorflow/{profile}.json"}}
    assert json.loads(profile_file.read_text()) == render_seccomp(model)
    assert oct(profile_file.stat().st_mode & 0o777) == oct(0o644)

    pod = containerd.run_pod("web-0", "shop", labels={"app": "enforced"})
    try:
        # The same workload with another input runs under the profile.
        workload = WORKLOAD.format(file="/etc/passwd", word="two", n=2)
        code, lines = run_to_end(containerd, pod, "work", workload, profile_file)
        assert code == 0, lines
        assert lines[0] == "root:x:0:0:root:/:/bin/sh" and "two" in lines, lines
        assert lines[-1] == "work 2 ok", lines  # its thread made through clone

        # What it never did is refused, inside a container under the profile...
        script = "; ".join(f"{command} 2>&1" for command in PROBES) + "; echo probed"
        code, lines = run_to_end(containerd, pod, "probes", script, profile_file)
        assert code == 0 and lines[-1] == "probed", lines
        assert lines[:-1] == list(PROBES.values())

        # ...and reaches the kernel in one without it.
        script = "; ".join(UNCONFINED) + "; unshare -U true && echo unshare-U ok"
        code, lines = run_to_end(containerd, pod, "unconfined", script, None)
        assert code == 0, lines
        assert lines == [*UNCONFINED.values(), "unshare-U ok"]
    finally:
        containerd.remove_pod(pod)


def test_a_workload_that_asks_for_a_namespace_keeps_it(
    containerd: Containerd, tmp_path: Path
) -> None:
    """A model that saw `unshare -U` (as the tracer records it: with its flags) allows
    exactly that through the runtime, and still no other namespace."""
    profile = f"userns-{uuid.uuid4().hex[:6]}"
    base = {"v": 1, "ts": 1, "node": "n", "profile": profile, "namespace": "shop",
            "pod": "p", "container": "c", "container_id": "x", "pid": 1, "comm": "sh"}
    # what the first test's workload needed, plus unshare(CLONE_NEWUSER)
    probe_model = model_of_busybox_run()
    events = [dict(base, kind="syscall", name=name) for name in sorted(probe_model)]
    events.append(dict(base, kind="syscall", name="unshare", flags=CLONE_NEWUSER))
    model = reduce_events(events)[profile]
    resource_dir = tmp_path / "models"
    FileSink(resource_dir).write(CompletedModel(
        profile=profile, namespace="varmor", policy=PolicyRef("VarmorClusterPolicy", "", "p"),
        enforcer="Seccomp", model=model, apparmor=None, seccomp=render_seccomp(model)))
    stored = read_model_file(resource_dir / "varmor" / f"{profile}.yaml")
    installed = enforce_seccomp(stored, tmp_path / "seccomp")

    pod = containerd.run_pod("userns-0", "shop")
    try:
        script = ("unshare -U true && echo user ok; /bin/nsprobe unshare-net; "
                  "/bin/nsprobe clone-user")
        code, lines = run_to_end(containerd, pod, "userns", script, installed.path)
        assert code == 0, lines
        assert lines == ["user ok", "unshare-net EPERM", "clone-user EPERM"]
    finally:
        containerd.remove_pod(pod)


def model_of_busybox_run() -> set[str]:
    """Syscalls of the probe script above, by strace on the host (same static binaries),
    with the namespace ones left out: they are given with their flags."""
    log = Path(f"/tmp/armorflow-strace-{uuid.uuid4().hex}")
    probe = str(build_nsprobe())
    try:
        subprocess.run(["strace", "-f", "-qq", "-o", str(log), "busybox", "sh", "-c",
                        f"busybox unshare -U true; {probe} unshare-net; {probe} clone-user"],
                       capture_output=True, timeout=60, check=True)
        names = set()
        for line in log.read_text().splitlines():
            head = line.split(None, 1)[1] if " " in line else ""
            name = head.split("(", 1)[0]
            if name.isidentifier():
                names.add(name)
    finally:
        log.unlink(missing_ok=True)
    return names - {"unshare", "clone", "clone3", "setns"}


def test_a_stored_profile_without_namespace_filters_is_refused(tmp_path: Path) -> None:
    stored = read_model_file_from(tmp_path, {"syscalls": [
        {"names": ["clone", "read"], "action": "SCMP_ACT_ALLOW"}]})
    with pytest.raises(EnforceError, match="allows clone without namespace filters"):
        enforce_seccomp(stored, tmp_path / "seccomp")
    installed = enforce_seccomp(stored, tmp_path / "seccomp", render=True)
    rules = json.loads(installed.path.read_text())["syscalls"]
    assert {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{
        "index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]} in rules


def read_model_file_from(tmp_path: Path, seccomp: dict[str, Any]) -> Any:
    from armorflow.model import BehaviourModel
    from armorflow.resource import build_resource, build_status

    model = BehaviourModel(syscalls={"clone", "read"})
    resource, stored = build_resource("old-profile", "varmor", model, None, seccomp,
                                      enforcer="Seccomp",
                                      owner=PolicyRef("VarmorClusterPolicy", "", "p"))
    resource["status"] = build_status("Seccomp", None, seccomp, stored)
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(resource))
    return read_model_file(path)

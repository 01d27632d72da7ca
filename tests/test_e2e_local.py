"""End to end on one machine, every part real: the eBPF tracer captures a command, the
agent's publisher sends the events to the embedded broker, a pipeline worker models the
window, and the rendered AppArmor profile compiles."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from armorflow.broker import EmbeddedBroker
from support.apparmor_check import compile_check
from support.pipeline import WorkerProcess, completed, control, model_docs, unique

pytestmark = [pytest.mark.broker, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def worker(noida_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(noida_broker, unique("e2e"), tmp_path, grace_s=2.0).start()
    w.wait_ready()
    yield w
    w.stop()


def test_traced_command_becomes_a_compiling_profile(
    noida_broker: EmbeddedBroker, worker: WorkerProcess, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("the eBPF tracer needs root (CI runs as root)")
    profile = unique("e2e-prof")
    control(noida_broker, "start", profile, duration_s=600)
    out = subprocess.run(
        [str(Path(sys.executable).parent / "armorflow"), "trace", "--profile", profile,
         "-b", noida_broker.bootstrap_servers, "--spool-dir", str(tmp_path / "spool"),
         "--", "sh", "-c", "cat /etc/hostname > /dev/null; id -u"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    time.sleep(2)
    control(noida_broker, "update", profile, duration_s=0.001)
    completed(noida_broker, profile, timeout_s=60)
    (doc,) = [d for d in model_docs(noida_broker, profile) if d["pipeline"] == worker.app_id]
    dyn = doc["model"]["dynamicResult"]
    assert "/usr/bin/id" in dyn["apparmor"]["executions"]
    assert any(f["path"] == "/etc/hostname" for f in dyn["apparmor"]["files"])
    assert {"execve", "openat"} <= set(dyn["seccomp"]["syscalls"])
    assert "/usr/bin/id ix," in doc["apparmor"]
    compile_check(doc["apparmor"])


def test_workload_traced_with_ebpf_runs_under_its_own_seccomp_profile(tmp_path: Path) -> None:
    """Issue 5's re-run, with the agent's tracer as the recorder: the workload succeeds
    under the profile rendered from its own capture; a syscall it never made is denied."""
    if os.geteuid() != 0:
        pytest.fail("the eBPF tracer needs root (CI runs as root)")
    from armorflow.events import read_events
    from armorflow.model import reduce_events
    from armorflow.render import render_seccomp
    from support.seccomp_apply import apply_seccomp_and_exec

    command = ["sh", "-c", "cat /etc/hostname; id -u; ls /"]
    recording = tmp_path / "workload.jsonl"
    traced = subprocess.run(
        [str(Path(sys.executable).parent / "armorflow"), "trace", "--profile", "rerun",
         "--out", str(recording), "--", *command],
        capture_output=True, text=True, timeout=120,
    )
    assert traced.returncode == 0, traced.stderr[-3000:]
    model = reduce_events(read_events(recording))["rerun"]
    assert {"execve", "openat", "read", "write"} <= model.syscalls
    assert "unshare" not in model.syscalls
    profile = render_seccomp(model)

    plain = subprocess.run(command, capture_output=True, check=True)
    rerun = apply_seccomp_and_exec(profile, command)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert rerun.stdout == plain.stdout

    denied = apply_seccomp_and_exec(profile, ["unshare", "--user", "true"])
    assert denied.returncode != 0
    assert b"Operation not permitted" in denied.stderr

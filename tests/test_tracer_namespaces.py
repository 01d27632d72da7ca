"""The tracer records the namespace flags of clone, clone3, unshare and setns, and the
profile rendered from what it recorded lets the workload run and refuses the namespaces
it never asked for (the filter applied with libseccomp, as a runtime does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from armorflow.agents.bpf import Tracer
from armorflow.model import reduce_events
from armorflow.nsflags import CLONE_NEWNET, CLONE_NEWUSER, NAMESPACE_SYSCALLS
from armorflow.render import render_seccomp
from support.nsprobe import build_nsprobe
from support.seccomp_apply import apply_seccomp_and_exec
from test_tracer import of_kind, run_traced

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def nsprobe() -> Path:
    return build_nsprobe()


def test_namespace_flags_are_recorded_once_per_distinct_set(
    tracer: Tracer, nsprobe: Path
) -> None:
    probe = str(nsprobe)
    script = "; ".join([
        f"{probe} work 1", f"{probe} unshare-user", f"{probe} unshare-user",
        f"{probe} clone-user", f"{probe} clone3-user", f"{probe} setns-net /proc/self/ns/net",
        "unshare -Un true",
    ])
    events, box = run_traced(tracer, ["sh", "-c", script], "demo-ns")
    assert box.poll() == 0
    calls = [(e["name"], e.get("flags")) for e in of_kind(events, "syscall")
             if e["name"] in NAMESPACE_SYSCALLS]
    assert sorted(calls, key=repr) == sorted([
        ("clone", 0),                          # sh's forks, the probe's fork
        ("clone3", 0),                         # pthread_create (glibc >= 2.34)
        ("unshare", CLONE_NEWUSER),            # reported once although made twice
        ("clone", CLONE_NEWUSER),
        ("clone3", CLONE_NEWUSER),             # read from struct clone_args
        ("setns", CLONE_NEWNET),
        ("unshare", CLONE_NEWUSER | CLONE_NEWNET),  # util-linux unshare -Un
    ], key=repr)
    # other syscalls carry no flags
    assert all("flags" not in e for e in of_kind(events, "syscall")
               if e["name"] not in NAMESPACE_SYSCALLS)

    model = reduce_events(events)["demo-ns"]
    assert model.namespace_flags == {
        "clone": {0, CLONE_NEWUSER}, "clone3": {0, CLONE_NEWUSER},
        "unshare": {CLONE_NEWUSER, CLONE_NEWUSER | CLONE_NEWNET}, "setns": {CLONE_NEWNET}}


def test_a_traced_workload_runs_under_its_profile_and_gets_no_namespace(
    tracer: Tracer, nsprobe: Path
) -> None:
    probe = str(nsprobe)
    events, box = run_traced(tracer, [probe, "work", "1"], "demo-ns-work")
    assert box.poll() == 0
    model = reduce_events(events)["demo-ns-work"]
    assert model.namespace_flags == {"clone": {0}, "clone3": {0}}
    profile = render_seccomp(model)

    def run(*argv: str) -> str:
        done = apply_seccomp_and_exec(profile, [probe, *argv])
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    # another input; its thread is made through clone after clone3's ENOSYS
    assert run("work", "2") == "work 2 ok"
    assert run("unshare-user") == "unshare-user EPERM"
    assert run("clone-user") == "clone-user EPERM"
    assert run("clone3-user") == "clone3-user ENOSYS"
    assert run("clone3-plain") == "clone3-plain ENOSYS"
    assert run("setns-net", "/proc/self/ns/net") == "setns-net EPERM"
    assert run("mount", "/nonexistent") == "mount EPERM"
    # without the filter each of them reaches the kernel
    unfiltered = {argv[0]: os.popen(f"{probe} {' '.join(argv)}").read().strip()
                  for argv in (["clone-user"], ["clone3-user"], ["mount", "/nonexistent"])}
    assert unfiltered == {"clone-user": "clone-user ok", "clone3-user": "clone3-user ok",
                          "mount": "mount ENOENT"}

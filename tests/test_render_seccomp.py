"""The Seccomp renderer, and the real re-run: a recorded workload runs under its own profile,
a syscall it never made is refused with EPERM.

Recording uses strace (the agent's eBPF tracer will replace it); the profile is applied
with libseccomp in a wrapper process that then execs the workload, as a runtime does.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from armorflow.model import BehaviourModel
from armorflow.render import RUNTIME_SYSCALLS, Drops, render_seccomp, seccomp_json
from armorflow.render.seccomp import ARCHITECTURES
from support.seccomp_apply import apply_seccomp_and_exec, build_filter


def workload(tmp_path: Path) -> list[str]:
    """``cat /etc/hostname; id; ls DIR`` on a directory nobody else writes to."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for name in ("a.txt", "b.log"):
        (data / name).write_text(name)
    return ["sh", "-c", f"cat /etc/hostname; id; ls {data}"]

# "1234 openat(...", "1234 <... wait4 resumed>...": the syscall name of a strace line.
_STRACE_CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_][a-z0-9_]*)(?:\(| resumed>)")
_STRACE_RESULT = re.compile(r"^\d+\s+([a-z_][a-z0-9_]*)\(.*\)\s+=\s+(-?\d+|\?)\s*(\w+)?")


def strace_syscalls(log: Path) -> set[str]:
    """Names of the syscalls in an ``strace -f`` log (signals and exits are skipped)."""
    names: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        m = _STRACE_CALL.match(line)
        if m:
            names.add(m.group(1))
    return names


def strace_errors(log: Path, code: str) -> list[str]:
    """Syscalls in an strace log that failed with ``code`` (e.g. EPERM)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = _STRACE_RESULT.match(line)
        if m and m.group(3) == code:
            out.append(m.group(1))
    return out


def record(argv: list[str], log: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=all", *argv],
        capture_output=True, timeout=60, check=True,
    )


# --- the profile ------------------------------------------------------------------------------


def test_profile_shape_is_deterministic_and_sorted() -> None:
    model = BehaviourModel(syscalls={"write", "openat", "read", "unshare"})
    profile = render_seccomp(model)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    [rule] = profile["syscalls"]
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert rule["names"] == sorted(rule["names"])
    assert set(rule["names"]) == {"write", "openat", "read", "unshare"} | RUNTIME_SYSCALLS.keys()
    again = BehaviourModel(syscalls={"unshare", "read", "openat", "write"})
    assert seccomp_json(render_seccomp(again)) == seccomp_json(profile)


def test_runtime_set_is_optional_and_extra_is_added() -> None:
    profile = render_seccomp(BehaviourModel(syscalls={"read"}), runtime=False, extra=["getpid"])
    assert profile["syscalls"][0]["names"] == ["getpid", "read"]
    assert render_seccomp(BehaviourModel(), runtime=False)["syscalls"] == []


def test_unknown_names_are_dropped_and_counted() -> None:
    drops = Drops()
    model = BehaviourModel(syscalls={"read", "no_such_call", "Read", "x;rm", "_llseek"})
    names = render_seccomp(model, runtime=False, drops=drops)["syscalls"][0]["names"]
    # _llseek exists on 32-bit x86, one of the profile's architectures.
    assert names == ["_llseek", "read"]
    assert drops.counts == {"seccomp:unknown-syscall": 3}


def test_every_runtime_syscall_is_known_to_libseccomp() -> None:
    drops = Drops()
    render_seccomp(BehaviourModel(), drops=drops)
    assert drops.total == 0
    build_filter(render_seccomp(BehaviourModel()))


def test_varmor_demo_seccomp_is_a_profile_we_can_load(shared_dir: Path) -> None:
    demo = json.loads(
        (shared_dir / "data/audit/varmor/behavior_modeling_demo4_seccomp.json").read_text()
    )
    observed = {n for rule in demo["syscalls"] for n in rule["names"]}
    ours = render_seccomp(BehaviourModel(syscalls=observed))
    assert observed <= set(ours["syscalls"][0]["names"])
    build_filter(ours)
    build_filter(demo)


# --- the real re-run ------------------------------------------------------------------------


@pytest.mark.slow
def test_recorded_workload_runs_under_its_profile_and_nothing_else_does(tmp_path: Path) -> None:
    command = workload(tmp_path)
    first = record(command, tmp_path / "record.log")
    observed = strace_syscalls(tmp_path / "record.log")
    assert {"execve", "openat", "read", "write"} <= observed
    assert "unshare" not in observed and "mount" not in observed

    profile = render_seccomp(BehaviourModel(syscalls=observed))
    (tmp_path / "profile.json").write_text(seccomp_json(profile))

    # The same workload under its own profile: same output, and no syscall refused that
    # was not refused in the recorded run too.
    rerun_log = tmp_path / "rerun.log"
    rerun = apply_seccomp_and_exec(
        profile, command, prefix=["strace", "-f", "-qq", "-o", str(rerun_log)]
    )
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert rerun.stdout == first.stdout
    assert strace_errors(rerun_log, "EPERM") == strace_errors(tmp_path / "record.log", "EPERM")

    # Without strace in between too (what a runtime does).
    assert apply_seccomp_and_exec(profile, command).stdout == first.stdout

    # A syscall the workload never made is refused with EPERM.
    denied_log = tmp_path / "denied.log"
    denied = apply_seccomp_and_exec(
        profile, ["unshare", "--user", "true"],
        prefix=["strace", "-f", "-qq", "-o", str(denied_log)],
    )
    assert denied.returncode != 0
    assert b"Operation not permitted" in denied.stderr
    assert "unshare" in strace_errors(denied_log, "EPERM")

    # And the same command is fine without the filter: the denial is the profile's doing.
    assert subprocess.run(["unshare", "--user", "true"], check=False).returncode == 0


@pytest.mark.slow
def test_profile_without_execve_stops_the_workload(tmp_path: Path) -> None:
    command = workload(tmp_path)
    record(command, tmp_path / "record.log")
    observed = strace_syscalls(tmp_path / "record.log") - {"execve"}
    profile = render_seccomp(BehaviourModel(syscalls=observed), runtime=False)
    result = apply_seccomp_and_exec(profile, command)
    assert result.returncode == 126
    assert b"Operation not permitted" in result.stderr


@pytest.mark.root
@pytest.mark.slow
def test_mount_is_refused_once_it_is_left_out(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    command = ["mount", "-t", "tmpfs", "none", str(target)]
    record(command, tmp_path / "record.log")
    subprocess.run(["umount", str(target)], check=True)
    observed = strace_syscalls(tmp_path / "record.log")
    assert "mount" in observed
    profile = render_seccomp(BehaviourModel(syscalls=observed - {"mount"}))
    log = tmp_path / "rerun.log"
    result = apply_seccomp_and_exec(
        profile, command, prefix=["strace", "-f", "-qq", "-o", str(log)]
    )
    assert result.returncode != 0
    assert strace_errors(log, "EPERM") == ["mount"]
    assert not (target / ".").is_mount()


def test_profile_json_round_trips(tmp_path: Path) -> None:
    profile = render_seccomp(BehaviourModel(syscalls={"read"}))
    assert json.loads(seccomp_json(profile)) == profile
    assert set(ARCHITECTURES) == set(profile["architectures"])

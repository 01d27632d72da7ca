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
from typing import Any

import pytest

from armorflow.model import BehaviourModel
from armorflow.nsflags import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, NAMESPACE_SYSCALLS
from armorflow.render import RUNTIME_SYSCALLS, Drops, render_seccomp, seccomp_json
from armorflow.render.seccomp import ARCHITECTURES, unfiltered_namespace_syscalls
from armorflow.render.syscall_families import SYSCALL_FAMILIES, TIMING_SYSCALLS, family_of
from support.nsprobe import build_nsprobe
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


def allowed_names(profile: dict[str, Any]) -> set[str]:
    return {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
            for n in rule["names"]}


def masked(index: int, mask: int, bits: int) -> list[dict[str, Any]]:
    return [{"index": index, "value": mask, "valueTwo": bits, "op": "SCMP_CMP_MASKED_EQ"}]


NO_NAMESPACE_CLONE = {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": masked(0, 0x7E020000, 0)}
CLONE3_ENOSYS = {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}


def test_profile_shape_is_deterministic_and_sorted() -> None:
    model = BehaviourModel(syscalls={"write", "openat", "read", "unshare"})
    profile = render_seccomp(model)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    rule, clone, unshare, clone3 = profile["syscalls"]
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert rule["names"] == sorted(rule["names"])
    assert set(rule["names"]) == ({"write", "read"} | family_of("openat")
                                  | RUNTIME_SYSCALLS.keys() | TIMING_SYSCALLS.keys()) - {"clone"}
    # unshare seen without flags (no flags recorded): allowed without namespace flags only;
    # clone (the runtime's) likewise; clone3 answers ENOSYS so that libc uses clone
    assert clone == NO_NAMESPACE_CLONE
    assert unshare == {"names": ["unshare"], "action": "SCMP_ACT_ALLOW",
                       "args": masked(0, 0x7E020080, 0)}
    assert clone3 == CLONE3_ENOSYS
    again = BehaviourModel(syscalls={"unshare", "read", "openat", "write"})
    assert seccomp_json(render_seccomp(again)) == seccomp_json(profile)
    build_filter(profile)


def test_one_rule_per_observed_namespace_flag_set() -> None:
    model = BehaviourModel(
        syscalls={"clone", "unshare", "setns"},
        namespace_flags={"clone": {0, CLONE_NEWUSER | CLONE_NEWNS},
                         "unshare": {CLONE_NEWNET}, "setns": {CLONE_NEWNET, 0}})
    profile = render_seccomp(model, runtime=False, timing=False)
    assert profile["syscalls"] == [  # no other syscall: no plain group
        NO_NAMESPACE_CLONE,
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": masked(0, 0x7E020000, CLONE_NEWUSER | CLONE_NEWNS)},
        {"names": ["unshare"], "action": "SCMP_ACT_ALLOW",
         "args": masked(0, 0x7E020080, CLONE_NEWNET)},
        {"names": ["setns"], "action": "SCMP_ACT_ALLOW", "args": masked(1, 0x7E020080, 0)},
        {"names": ["setns"], "action": "SCMP_ACT_ALLOW",
         "args": masked(1, 0x7E020080, CLONE_NEWNET)},
        CLONE3_ENOSYS,
    ]
    assert unfiltered_namespace_syscalls(profile) == []
    build_filter(profile)


def test_clone3_is_allowed_only_when_it_asked_for_a_namespace() -> None:
    plain = BehaviourModel(syscalls={"clone3"}, namespace_flags={"clone3": {0}})
    rules = render_seccomp(plain, runtime=False, timing=False)["syscalls"]
    # the fallback clone gets clone3's flag sets
    assert rules == [NO_NAMESPACE_CLONE, CLONE3_ENOSYS]
    userns = BehaviourModel(syscalls={"clone3", "clone"},
                            namespace_flags={"clone3": {0, CLONE_NEWUSER}, "clone": {0}})
    rules = render_seccomp(userns, runtime=False, timing=False)["syscalls"]
    # seccomp cannot read clone3's flags: allowing the one it asked for allows them all
    assert rules == [{"names": ["clone3"], "action": "SCMP_ACT_ALLOW"}, NO_NAMESPACE_CLONE]
    assert render_seccomp(BehaviourModel(syscalls={"read"}), runtime=False,
                          timing=False)["syscalls"] == [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]  # no clone at all: no clone3 rule


def test_stored_profiles_without_namespace_filters_are_recognised() -> None:
    old = {"syscalls": [{"names": ["clone", "read", "setns"], "action": "SCMP_ACT_ALLOW"},
                        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}]}
    assert unfiltered_namespace_syscalls(old) == ["clone", "setns"]


def test_runtime_set_is_optional_and_extra_is_added() -> None:
    profile = render_seccomp(BehaviourModel(syscalls={"read"}), runtime=False, extra=["getpid"],
                             timing=False)
    assert profile["syscalls"][0]["names"] == ["getpid", "read"]
    assert render_seccomp(BehaviourModel(), runtime=False, timing=False)["syscalls"] == []


def test_unknown_names_are_dropped_and_counted() -> None:
    drops = Drops()
    model = BehaviourModel(syscalls={"read", "no_such_call", "Read", "x;rm", "_llseek"})
    names = render_seccomp(model, runtime=False, drops=drops, timing=False)["syscalls"][0]["names"]
    # _llseek exists on 32-bit x86, one of the profile's architectures.
    assert names == ["_llseek", "read"]
    assert drops.counts == {"seccomp:unknown-syscall": 3}


def test_every_runtime_syscall_is_known_to_libseccomp() -> None:
    drops = Drops()
    render_seccomp(BehaviourModel(), drops=drops)
    assert drops.total == 0
    build_filter(render_seccomp(BehaviourModel()))


def test_a_seen_syscall_brings_its_family_and_nothing_else() -> None:
    profile = render_seccomp(BehaviourModel(syscalls={"epoll_pwait", "read"}), runtime=False,
                             timing=False)
    names = allowed_names(profile)
    assert {"poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait2"} <= names
    assert names == family_of("poll") | {"read"}
    # read has no family: a program that only reads never gets write or readv.
    assert family_of("read") == frozenset()
    exact = render_seccomp(BehaviourModel(syscalls={"epoll_pwait", "read"}), runtime=False,
                           families=False, timing=False)
    assert allowed_names(exact) == {"epoll_pwait", "read"}
    # A user's allow-list is taken as it is.
    listed = render_seccomp(BehaviourModel(), runtime=False, extra=["poll"], timing=False)
    assert allowed_names(listed) == {"poll"}


def test_families_are_disjoint_known_and_keep_out_what_a_profile_guards() -> None:
    seen: set[str] = set()
    for members, why in SYSCALL_FAMILIES:
        assert len(members) >= 2 and why
        assert not members & seen, members & seen
        seen |= members
    drops = Drops()
    render_seccomp(BehaviourModel(syscalls=seen), runtime=False, drops=drops)
    assert drops.total == 0
    guarded = {"unshare", "setns", "clone", "clone3", "mount", "umount2", "pivot_root",
               "ptrace", "bpf", "init_module", "finit_module", "kexec_load", "setuid",
               "setresuid", "capset", "personality", "keyctl", "add_key", "write", "readv",
               "pread64", "execve", "execveat", "splice", "sendfile", "memfd_create"}
    assert not seen & guarded


def test_varmor_demo_seccomp_is_a_profile_we_can_load(shared_dir: Path) -> None:
    demo = json.loads(
        (shared_dir / "data/audit/varmor/behavior_modeling_demo4_seccomp.json").read_text()
    )
    observed = {n for rule in demo["syscalls"] for n in rule["names"]}
    ours = render_seccomp(BehaviourModel(syscalls=observed))
    assert observed - NAMESPACE_SYSCALLS.keys() <= set(ours["syscalls"][0]["names"])
    # vArmor's unshare is allowed with any flags; ours without namespace flags (the
    # model has none recorded), see docs/profiles.md
    assert {"names": ["unshare"], "action": "SCMP_ACT_ALLOW",
            "args": masked(0, 0x7E020080, 0)} in ours["syscalls"]
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


#: Waits for its children's output the way event libraries do: epoll for many
#: descriptors, poll for a few (the count is the input).
WAITER = """
import os, selectors, subprocess, sys
n = int(sys.argv[1])
kids = [subprocess.Popen(["/bin/echo", str(i)], stdout=subprocess.PIPE) for i in range(n)]
sel = selectors.EpollSelector() if n > 4 else selectors.PollSelector()
for kid in kids:
    sel.register(kid.stdout, selectors.EVENT_READ)
got = 0
while got < n:
    for key, _ in sel.select(5):
        sys.stdout.write(os.read(key.fd, 64).decode()); sel.unregister(key.fileobj); got += 1
for kid in kids:
    kid.wait()
"""


@pytest.mark.slow
def test_a_wait_of_another_kind_on_other_input_still_runs(tmp_path: Path) -> None:
    import sys

    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    record([sys.executable, str(script), "8"], tmp_path / "record.log")
    observed = strace_syscalls(tmp_path / "record.log")
    assert "epoll_wait" in observed or "epoll_pwait" in observed
    assert "poll" not in observed  # what makes this test worth having
    # (timing=False: poll is also one of the timing syscalls; this is about families)
    rerun = apply_seccomp_and_exec(render_seccomp(BehaviourModel(syscalls=observed),
                                                  timing=False),
                                   [sys.executable, str(script), "3"])
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert sorted(rerun.stdout.split()) == [b"0", b"1", b"2"]
    # Without the families the same run is refused at its first poll.
    log = tmp_path / "exact.log"
    exact = apply_seccomp_and_exec(
        render_seccomp(BehaviourModel(syscalls=observed), families=False, timing=False),
        [sys.executable, str(script), "3"], prefix=["strace", "-f", "-qq", "-o", str(log)])
    assert exact.returncode != 0
    # (strace splits the blocking call: "poll(... <unfinished ...>", "<... poll resumed>")
    assert re.search(r"\bpoll(\(| resumed>).*= -1 EPERM", log.read_text()), "poll not refused"


def test_timing_syscalls_are_in_every_profile_unless_asked_not_to() -> None:
    assert TIMING_SYSCALLS.keys() <= allowed_names(render_seccomp(BehaviourModel()))
    assert not allowed_names(render_seccomp(BehaviourModel(), runtime=False, timing=False))
    drops = Drops()
    render_seccomp(BehaviourModel(), drops=drops)
    assert drops.total == 0


@pytest.mark.slow
def test_a_slower_reader_makes_xz_wait_and_the_profile_still_holds(tmp_path: Path) -> None:
    """xz makes a piped stdout non-blocking and polls it only when the pipe is full, that
    is when the reader is slower than xz: a small input never fills it. Recorded on the
    small one, the profile must let the large one through."""
    import os

    for name, size in (("small", 1_000), ("large", 1_000_000)):
        raw = tmp_path / name
        raw.write_bytes(os.urandom(size))
        subprocess.run(["xz", "-k", str(raw)], check=True)

    def pipeline(name: str) -> list[str]:
        return ["sh", "-c", f"xz -dc {tmp_path / name}.xz | (sleep 0.3; cat > {tmp_path}/out)"]

    record(pipeline("small"), tmp_path / "record.log")
    observed = strace_syscalls(tmp_path / "record.log")
    assert not observed & {"poll", "ppoll", "select", "pselect6"}  # what makes it worth having
    ok = apply_seccomp_and_exec(render_seccomp(BehaviourModel(syscalls=observed)),
                                pipeline("large"))
    assert ok.returncode == 0, ok.stderr.decode()
    assert (tmp_path / "out").read_bytes() == (tmp_path / "large").read_bytes()
    refused = apply_seccomp_and_exec(
        render_seccomp(BehaviourModel(syscalls=observed), timing=False), pipeline("large"))
    assert b"poll() failed" in refused.stderr


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


@pytest.mark.slow
def test_namespaces_under_the_filter_are_exactly_the_observed_ones(tmp_path: Path) -> None:
    """A workload seen making a thread, a fork and unshare(CLONE_NEWUSER) keeps them
    under its profile; other namespaces, by any of the four calls, are refused."""
    probe = str(build_nsprobe())
    record([probe, "work", "1"], tmp_path / "work.log")
    record([probe, "unshare-user"], tmp_path / "unshare.log")
    observed = strace_syscalls(tmp_path / "work.log") | strace_syscalls(tmp_path / "unshare.log")
    assert {"clone", "clone3", "unshare"} <= observed
    model = BehaviourModel(syscalls=observed, namespace_flags={
        "clone": {0}, "clone3": {0}, "unshare": {CLONE_NEWUSER}})
    profile = render_seccomp(model)

    def run(*argv: str) -> str:
        done = apply_seccomp_and_exec(profile, [probe, *argv])
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    assert run("work", "2") == "work 2 ok"  # its thread through clone, after ENOSYS
    assert run("unshare-user") == "unshare-user ok"
    assert run("unshare-net") == "unshare-net EPERM"
    assert run("clone-user") == "clone-user EPERM"
    assert run("clone3-user") == "clone3-user ENOSYS"
    assert run("setns-net", "/proc/self/ns/net") == "setns-net EPERM"


def test_docs_show_every_family_and_timing_syscall() -> None:
    docs = (Path(__file__).parent.parent / "docs/profiles.md").read_text()
    section = docs[docs.index("### Variants and timing"):docs.index("### Enforcing")]
    for members, _why in SYSCALL_FAMILIES:
        assert "| " + ", ".join(f"`{n}`" for n in sorted(members)) + " |" in section
    for name in TIMING_SYSCALLS:
        assert f"| `{name}` |" in section

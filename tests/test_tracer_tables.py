"""The tracer's tables against independent sources on this machine: BTF offsets against
bpftool's dump, syscall numbers against auditd's ausyscall, names against the kernel ABI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from armorflow.agents.bpf import loader, names
from armorflow.agents.bpf.btf import Btf, BtfError
from armorflow.agents.syscalls import (
    NEWER_SYSCALLS,
    canonical_arch,
    syscall_name,
    syscall_number,
    table,
)

VMLINUX = Path("/sys/kernel/btf/vmlinux")


def _bpftool_types() -> dict[int, tuple[str, str, list[tuple[str, int, int]], int]]:
    """type id -> (kind, name, members (name, type id, bit offset), referenced type id)."""
    tool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    dump = subprocess.run(
        [tool, "btf", "dump", "file", str(VMLINUX), "format", "raw"],
        capture_output=True, text=True, check=True,
    ).stdout
    types: dict[int, tuple[str, str, list[tuple[str, int, int]], int]] = {}
    current: list[tuple[str, int, int]] = []
    header = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(?:.*?type_id=(\d+))?")
    member = re.compile(r"^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)")
    for line in dump.splitlines():
        if m := header.match(line):
            current = []
            types[int(m[1])] = (m[2], m[3], current, int(m[4] or 0))
        elif (m := member.match(line)) is not None:
            current.append((m[1], int(m[2]), int(m[3])))
    return types


@pytest.fixture(scope="module")
def bpftool_types() -> dict[int, tuple[str, str, list[tuple[str, int, int]], int]]:
    return _bpftool_types()


def _bpftool_offset(types: dict[int, tuple[str, str, list[tuple[str, int, int]], int]],
                    struct: str, path: str) -> int:
    by_name = {}
    for type_id, (kind, name, _, _) in types.items():
        if kind in ("STRUCT", "UNION") and name not in by_name:
            by_name[name] = type_id
    type_id, bits = by_name[struct], 0

    def find(tid: int, wanted: str) -> tuple[int, int] | None:
        for name, member_type, offset in types[tid][2]:
            if name == wanted:
                return member_type, offset
            if name == "(anon)":
                inner = resolve(member_type)
                if types[inner][0] in ("STRUCT", "UNION") and (hit := find(inner, wanted)):
                    return hit[0], offset + hit[1]
        return None

    def resolve(tid: int) -> int:
        while types[tid][0] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            tid = types[tid][3]
        return tid

    for part in path.split("."):
        hit = find(type_id, part)
        assert hit is not None, f"bpftool has no {struct}.{path}"
        type_id, bits = resolve(hit[0]), bits + hit[1]
    return bits // 8


def test_btf_offsets_match_bpftool(
    bpftool_types: dict[int, tuple[str, str, list[tuple[str, int, int]], int]],
) -> None:
    btf = Btf.from_file()
    offsets = loader.kernel_offsets(btf)
    assert set(offsets) == set(loader.OFFSETS)
    for define, (struct, member) in loader.OFFSETS.items():
        assert offsets[define] == _bpftool_offset(bpftool_types, struct, member), define


def test_btf_names_what_is_missing() -> None:
    btf = Btf.from_file()
    with pytest.raises(BtfError, match="no member"):
        btf.offset("task_struct", "no_such_member")
    with pytest.raises(BtfError, match="not in the kernel"):
        btf.offset("no_such_struct", "x")
    with pytest.raises(BtfError, match="magic"):
        Btf(b"\0" * 64)


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_syscall_tables_match_ausyscall(arch: str) -> None:
    dump = subprocess.run(["ausyscall", arch, "--dump"], capture_output=True, text=True,
                          check=True).stdout
    audit = {int(n): name for n, name in re.findall(r"^(\d+)\s+(\w+)$", dump, re.M)}
    assert len(audit) > 300
    ours = table(arch)
    # ours adds the syscalls newer than the installed tables (checked on the kernel below)
    newer = set(NEWER_SYSCALLS["common"]) | set(NEWER_SYSCALLS[canonical_arch(arch)])
    assert set(audit) <= set(ours) and set(ours) - set(audit) <= newer
    # auditd spells four syscalls its own way; the kernel headers' names are the ones
    # seccomp (and libseccomp) use.
    auditd_spellings = {"pread", "pwrite", "sys_kexec_load", "sched_rr_get_interval64"}
    differing = {audit[n] for n in audit if ours[n] != audit[n]}
    assert differing <= auditd_spellings, differing


def test_syscall_name_spellings() -> None:
    assert syscall_name(257) == "openat"
    assert syscall_name(59, "x86_64") == "execve"
    assert syscall_name(11, "i386") == "execve"
    assert syscall_name(11, "40000003") == "execve"  # audit's arch=40000003
    assert syscall_name(272, "C000003E") == "unshare"  # audit's arch=c000003e
    assert syscall_name(-1) is None
    assert syscall_name(100_000) is None
    assert syscall_number("openat") == 257
    assert canonical_arch("amd64") == "x86_64"
    with pytest.raises(ValueError, match="unsupported architecture"):
        syscall_name(1, "aarch64")


def test_names_follow_the_kernel_abi() -> None:
    import signal
    import socket

    assert names.capability_name(21) == "sys_admin"
    assert names.capability_name(0) == "chown"
    assert names.family_name(socket.AF_UNIX) == "unix"
    assert names.family_name(socket.AF_INET6) == "inet6"
    assert names.family_name(socket.AF_NETLINK) == "netlink"
    assert names.socket_type_name(socket.SOCK_STREAM) == "stream"
    assert names.socket_type_name(socket.SOCK_SEQPACKET) == "seqpacket"
    assert names.signal_name(int(signal.SIGTERM)) == "SIGTERM"
    assert names.signal_name(32) == "rtmin+0"
    assert names.signal_name(int(signal.SIGRTMIN)) == "rtmin+2"  # glibc reserves 32, 33
    assert names.signal_name(0) is None


# What a syscall's own tracepoint reports as its number: the kernel's table, not ours.
_NR_PROGRAM = b"""
BPF_HASH(seen, u32, u64, 64);

int on_enter(void *ctx)
{
    /* syscalls:sys_enter_* records: common header (8 bytes), then int __syscall_nr */
    u32 nr = 0;
    bpf_probe_read_kernel(&nr, sizeof(nr), ctx + 8);
    seen.increment(nr);
    return 0;
}
"""


@pytest.mark.root
def test_newer_syscall_numbers_are_the_running_kernels(tmp_path: Path) -> None:
    """Each added name's tracepoint fires with the number the table gives it.

    A child process calls every newer syscall with arguments the kernel rejects (bad fd,
    NULL pointers); a child, because uprobe/uretprobe outside a trampoline end it.
    """
    import os
    import sys

    if os.geteuid() != 0:
        pytest.fail("needs root (BPF)")
    headers = loader.kernel_source_dir()
    if headers is not None:
        os.environ["BCC_KERNEL_SOURCE"] = str(headers)
    from bcc import BPF

    events = Path("/sys/kernel/tracing/events/syscalls")
    expected = NEWER_SYSCALLS["common"] | NEWER_SYSCALLS["x86_64"]
    present = {nr: name for nr, name in expected.items()
               if (events / f"sys_enter_{name}").is_dir()}
    assert len(present) >= 10, "this kernel should have most of the newer syscalls"
    checked = {}
    for nr, name in sorted(present.items()):
        bpf = BPF(text=_NR_PROGRAM)
        try:
            bpf.attach_tracepoint(tp=f"syscalls:sys_enter_{name}".encode(), fn_name=b"on_enter")
            subprocess.run(
                [sys.executable, "-c",
                 "import ctypes, sys; ctypes.CDLL(None).syscall(int(sys.argv[1]), -1, 0, 0, 0, 0)",
                 str(nr)], check=False, timeout=10)
            checked[name] = sorted(k.value for k in bpf[b"seen"])
        finally:
            bpf.cleanup()
    assert checked == {name: [nr] for nr, name in present.items()}

"""Compile and attach the tracer's BPF programs with BCC.

The programs (one concern per ``.c`` file beside this module, sharing ``common.h``) are
compiled as one BCC module so they share their maps. Struct offsets come from the
running kernel's BTF and are passed as ``-D`` defines; the header tree BCC compiles
against only has to be self-consistent (see ``scripts/setup.sh``).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from armorflow.agents.bpf.btf import Btf
from armorflow.agents.syscalls import syscall_number

log = logging.getLogger(__name__)

HERE: Final = Path(__file__).resolve().parent
#: One file per concern, compiled together after common.h.
PROGRAM_FILES: Final = (
    "process.c",
    "syscalls.c",
    "files.c",
    "paths.c",
    "descriptors.c",
    "capabilities.c",
    "network.c",
    "signals.c",
    "mounts.c",
    "namespaces.c",
    "dispatch.c",
)

#: define -> (struct, member path): every kernel struct field the programs read.
OFFSETS: Final[dict[str, tuple[str, str]]] = {
    "OFF_TASK_NSPROXY": ("task_struct", "nsproxy"),
    "OFF_TASK_PID": ("task_struct", "pid"),
    "OFF_TASK_TGID": ("task_struct", "tgid"),
    "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
    "OFF_TASK_CRED": ("task_struct", "cred"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_TASK_TI_STATUS": ("task_struct", "thread_info.status"),
    "OFF_TASK_FS": ("task_struct", "fs"),
    "OFF_FS_PWD": ("fs_struct", "pwd"),
    "OFF_PT_REGS_DX": ("pt_regs", "dx"),
    "OFF_PT_REGS_R10": ("pt_regs", "r10"),
    "OFF_NSPROXY_MNT_NS": ("nsproxy", "mnt_ns"),
    "OFF_MNT_NS_INUM": ("mnt_namespace", "ns.inum"),
    "OFF_CRED_FSUID": ("cred", "fsuid"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDTABLE_FD": ("fdtable", "fd"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_PATH": ("file", "f_path"),
    "OFF_FILE_PRIVATE_DATA": ("file", "private_data"),
    "OFF_PATH_MNT": ("path", "mnt"),
    "OFF_PATH_DENTRY": ("path", "dentry"),
    "OFF_INODE_UID": ("inode", "i_uid"),
    "OFF_INODE_MODE": ("inode", "i_mode"),
    "OFF_DENTRY_PARENT": ("dentry", "d_parent"),
    "OFF_DENTRY_NAME": ("dentry", "d_name"),
    "OFF_MOUNT_MNT": ("mount", "mnt"),
    "OFF_MOUNT_PARENT": ("mount", "mnt_parent"),
    "OFF_MOUNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
    "OFF_VFSMOUNT_ROOT": ("vfsmount", "mnt_root"),
    "OFF_BPRM_FILE": ("linux_binprm", "file"),
    "OFF_SOCKET_TYPE": ("socket", "type"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SOCK_FAMILY": ("sock", "__sk_common.skc_family"),
    "OFF_SOCK_PROTOCOL": ("sock", "sk_protocol"),
    "OFF_CLONE_ARGS_FLAGS": ("clone_args", "flags"),  # UAPI, in user memory (clone3)
}

#: x86's "32-bit syscall active" thread status bit (arch/x86/include/asm/thread_info.h);
#: a constant, not a struct layout, so BTF does not carry it.
TS_COMPAT: Final = 0x0002

ENV_KERNEL_HEADERS: Final = "ARMORFLOW_KERNEL_HEADERS"


class LoadError(RuntimeError):
    """The BPF programs could not be compiled, loaded or attached; says why."""


@dataclass(frozen=True)
class Sizes:
    """Map and ring sizes; the defaults fit a node with a few hundred containers."""

    ring_pages: int = 4096  # 16 MiB
    max_targets: int = 4096
    max_pids: int = 65536
    seen_files: int = 262144
    seen_execs: int = 32768
    seen_small: int = 16384


#: Saved registers the programs read as one block, relative to r10 (the sys_exit dispatcher
#: reads r10..orig_ax, common.h's read_syscall_args r10..di); x86_64's pt_regs layout,
#: checked against BTF.
PT_REGS_BLOCK: Final = {"r10": 0, "r9": 8, "r8": 16, "dx": 40, "si": 48, "di": 56, "orig_ax": 64}


def kernel_offsets(btf: Btf | None = None) -> dict[str, int]:
    """The OFF_* defines for the running kernel."""
    btf = btf or Btf.from_file()
    base = btf.offset("pt_regs", "r10")
    for register, distance in PT_REGS_BLOCK.items():
        if btf.offset("pt_regs", register) != base + distance:
            raise LoadError(f"unexpected pt_regs layout: {register} is not at r10+{distance}")
    return {name: btf.offset(struct, member) for name, (struct, member) in OFFSETS.items()}


def program_source() -> str:
    """common.h followed by every program file, as one BCC compilation unit."""
    parts = [(HERE / "common.h").read_text()]
    for name in PROGRAM_FILES:
        parts.append(f"\n// ---- {name}\n" + (HERE / name).read_text())
    return "".join(parts)


def kernel_source_dir() -> Path | None:
    """Header tree for BCC when the running kernel has none under /lib/modules."""
    explicit = os.environ.get(ENV_KERNEL_HEADERS) or os.environ.get("BCC_KERNEL_SOURCE")
    if explicit:
        return Path(explicit)
    if Path(f"/lib/modules/{platform.release()}/build").exists():
        return None
    # Editable checkout: <repo>/agents/bpf/loader.py -> <repo>/.tools/kernel-headers
    for parent in HERE.parents:
        candidate = parent / ".tools" / "kernel-headers"
        if (candidate / ".complete").exists():
            return candidate
    raise LoadError(
        f"no kernel headers for {platform.release()}: run scripts/setup.sh or set "
        f"{ENV_KERNEL_HEADERS} to a merged linux-headers tree"
    )


#: Syscalls the programs dispatch on by number (x86_64).
DISPATCHED_SYSCALLS: Final = (
    "open", "openat", "openat2", "creat", "socket", "socketpair", "connect", "mount",
    "umount2", "pivot_root", "ptrace", "mmap", "mprotect", "brk", "mremap", "execve",
    "execveat", "clone", "clone3", "fork", "vfork", "unshare", "setns",
    # paths.c: operations on names
    "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "chmod", "fchmodat", "fchmodat2", "chown",
    "lchown", "fchownat", "truncate", "mknod", "mknodat", "bind",
    # descriptors.c: operations on open files
    "flock", "fcntl", "fchmod", "fchown",
)


def syscall_numbers() -> dict[str, int]:
    numbers: dict[str, int] = {}
    for name in DISPATCHED_SYSCALLS:
        number = syscall_number(name)
        if number is None:
            raise LoadError(f"no x86_64 number for syscall {name}")
        numbers[name] = number
    return numbers


KALLSYMS: Final = Path("/proc/kallsyms")


def function_range(name: str, kallsyms: Path = KALLSYMS) -> tuple[int, int]:
    """[start, end) of kernel function ``name``: its address and the next symbol's.

    capabilities.c tells a capability check that went through the LSM layer (where
    AppArmor mediates it) from a direct commoncap call by its caller's return address.
    """
    symbols: list[int] = []
    start = None
    with kallsyms.open() as listing:
        for line in listing:
            fields = line.split()
            if len(fields) < 3 or fields[1] not in "tTwW":
                continue
            address = int(fields[0], 16)
            symbols.append(address)
            if fields[2] == name and start is None:
                start = address
    if not start:
        raise LoadError(f"kernel function {name} not in {kallsyms} (or addresses hidden)")
    following = [a for a in symbols if a > start]
    return start, min(following) if following else start + 4096


def cflags(offsets: dict[str, int], sizes: Sizes) -> list[str]:
    for name in ("max_targets", "seen_files"):
        value = getattr(sizes, name)
        # Indexed by masking (files.c's seen-name sets, the target slots).
        if value < 2 or value & (value - 1):
            raise LoadError(f"Sizes.{name} must be a power of two, not {value}")
    flags = [f"-D{name}={value}" for name, value in sorted(offsets.items())]
    from armorflow.agents.bpf.names import capabilities

    numbers = {name: number for number, name in capabilities().items()}
    flags.append(f"-DCAP_SYS_ADMIN_NUMBER={numbers['sys_admin']}")
    lsm_start, lsm_end = function_range("security_capable")
    flags += [f"-DSECURITY_CAPABLE_START={lsm_start:#x}ULL",
              f"-DSECURITY_CAPABLE_END={lsm_end:#x}ULL"]
    flags += [
        f"-DTS_COMPAT_BIT={TS_COMPAT}",
        *(f"-DSYSNR_{name.upper()}={number}" for name, number in syscall_numbers().items()),
        f"-DRING_PAGES={sizes.ring_pages}",
        f"-DMAX_TARGETS={sizes.max_targets}",
        f"-DMAX_PIDS={sizes.max_pids}",
        f"-DSEEN_FILES={sizes.seen_files}",
        f"-DSEEN_EXECS={sizes.seen_execs}",
        f"-DSEEN_SMALL={sizes.seen_small}",
        "-Wno-unused-function",
    ]
    return flags


def load(sizes: Sizes | None = None) -> Any:
    """Compile, load and attach every program; returns the ``bcc.BPF`` object."""
    sizes = sizes or Sizes()
    if sizes.ring_pages & (sizes.ring_pages - 1):
        raise LoadError(f"ring_pages must be a power of two, got {sizes.ring_pages}")
    if os.geteuid() != 0:
        raise LoadError("loading BPF programs needs root")
    headers = kernel_source_dir()
    if headers is not None:
        os.environ["BCC_KERNEL_SOURCE"] = str(headers)
    try:
        from bcc import BPF
    except ImportError as exc:
        raise LoadError(f"BCC is not importable ({exc}): run scripts/setup.sh") from exc
    offsets = kernel_offsets()
    started = time.monotonic()
    try:
        bpf = BPF(text=program_source().encode(), cflags=cflags(offsets, sizes))
    except Exception as exc:  # BCC raises bare Exception for compile and load errors
        raise LoadError(f"BPF compile/load failed: {exc}") from exc
    log.info("BPF programs compiled, loaded and attached in %.2fs", time.monotonic() - started)
    return bpf


def attached_hooks(bpf: Any) -> tuple[list[bytes], list[bytes]]:
    """(raw tracepoints, category:event tracepoints) the programs are attached to."""
    return list(bpf.raw_tracepoint_fds), list(bpf.tracepoint_fds)


def detach(bpf: Any) -> None:
    """Detach every program, keeping programs and maps loaded (see :func:`attach`)."""
    raw, classic = attached_hooks(bpf)
    for tp in raw:
        bpf.detach_raw_tracepoint(tp=tp)
    for tp in classic:
        bpf.detach_tracepoint(tp=tp)


def attach(bpf: Any) -> None:
    """Attach every program by BCC's naming convention (after :func:`detach`)."""
    raw, classic = attached_hooks(bpf)
    for name in _function_names(bpf):
        if name.startswith(b"raw_tracepoint__"):
            tp = name[len(b"raw_tracepoint__"):]
            if tp not in raw:
                bpf.attach_raw_tracepoint(tp=tp, fn_name=name)
        elif name.startswith(b"tracepoint__"):
            tp = name[len(b"tracepoint__"):].replace(b"__", b":")
            if tp not in classic:
                bpf.attach_tracepoint(tp=tp, fn_name=name)


def _function_names(bpf: Any) -> list[bytes]:
    from bcc import lib

    return [lib.bpf_function_name(bpf.module, i) for i in range(lib.bpf_num_functions(bpf.module))]

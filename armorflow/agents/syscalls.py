"""Syscall number <-> name tables for x86_64 and i386, read from the machine at first use.

The tables come from the kernel UAPI headers that linux-libc-dev installs
(``asm/unistd_64.h`` and ``asm/unistd_32.h``), or, when those are missing, from
``ausyscall --dump`` (auditd). The running kernel is often newer than the userspace
headers (here: 6.1 headers, a 6.18 kernel), so syscalls added since 6.2 fill the gaps from
:data:`NEWER_SYSCALLS`, and never override the machine's own table. A test checks each
entry the running kernel has against it (each syscall's tracepoint reports its number).
Numbers known to neither resolve to ``None``; callers count and log them rather than
invent a name.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

#: Where linux-libc-dev puts the per-ABI syscall number headers on Debian amd64.
HEADER_DIRS: Final = (
    Path("/usr/include/x86_64-linux-gnu/asm"),
    Path("/usr/include/asm"),
)
_HEADER_FILES: Final = {"x86_64": "unistd_64.h", "i386": "unistd_32.h"}

#: Spellings of the two architectures, including the audit record's ``arch=`` values
#: (AUDIT_ARCH_X86_64 and AUDIT_ARCH_I386).
_ARCH_ALIASES: Final = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "c000003e": "x86_64",
    "i386": "i386",
    "i686": "i386",
    "x86": "i386",
    "40000003": "i386",
}

_DEFINE = re.compile(rb"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.MULTILINE)
_DUMP_LINE = re.compile(r"^(\d+)\s+(\w+)\s*$", re.MULTILINE)


#: Syscalls newer than Debian 12's headers (kernel 6.1), by release. Since 5.1 (424) new
#: syscalls get one number on every architecture; the x86-only ones are listed apart.
NEWER_SYSCALLS: Final[dict[str, dict[int, str]]] = {
    "common": {
        451: "cachestat",          # 6.5
        452: "fchmodat2",          # 6.6
        453: "map_shadow_stack",   # 6.6 (x86_64), reserved on every architecture since 6.7
        454: "futex_wake",         # 6.7
        455: "futex_wait",
        456: "futex_requeue",
        457: "statmount",          # 6.8
        458: "listmount",
        459: "lsm_get_self_attr",
        460: "lsm_set_self_attr",
        461: "lsm_list_modules",
        462: "mseal",              # 6.10
        463: "setxattrat",         # 6.13
        464: "getxattrat",
        465: "listxattrat",
        466: "removexattrat",
        467: "open_tree_attr",     # 6.15
        468: "file_getattr",       # 6.17
        469: "file_setattr",
    },
    # 64-bit only: the uprobe trampolines' syscalls (6.11, 6.16).
    "x86_64": {335: "uretprobe", 336: "uprobe"},
    "i386": {},
}


class SyscallTableError(RuntimeError):
    """No source of syscall numbers exists on this machine for the asked architecture."""


def canonical_arch(arch: str) -> str:
    """Map an architecture spelling (``x86_64``, ``c000003e``, ``i386``...) to its key."""
    key = _ARCH_ALIASES.get(arch.strip().lower().removeprefix("0x"))
    if key is None:
        raise ValueError(f"unsupported architecture {arch!r}: expected x86_64 or i386")
    return key


def _from_header(arch: str) -> dict[int, str] | None:
    for directory in HEADER_DIRS:
        header = directory / _HEADER_FILES[arch]
        if header.is_file():
            table = {int(n): name.decode() for name, n in _DEFINE.findall(header.read_bytes())}
            if table:
                return table
    return None


def _from_ausyscall(arch: str) -> dict[int, str] | None:
    tool = shutil.which("ausyscall") or shutil.which("ausyscall", path="/usr/bin:/usr/sbin")
    if tool is None:
        return None
    done = subprocess.run(
        [tool, arch, "--dump"], capture_output=True, text=True, check=False, timeout=10
    )
    if done.returncode != 0:
        return None
    table = {int(n): name for n, name in _DUMP_LINE.findall(done.stdout)}
    return table or None


@functools.cache
def table(arch: str = "x86_64") -> dict[int, str]:
    """Number -> name for ``arch``; raises :class:`SyscallTableError` when no source exists."""
    key = canonical_arch(arch)
    found = _from_header(key) or _from_ausyscall(key)
    if found is None:
        raise SyscallTableError(
            f"no {key} syscall table: install linux-libc-dev (asm/{_HEADER_FILES[key]}) or auditd"
        )
    known = set(found.values())
    for number, name in (NEWER_SYSCALLS["common"] | NEWER_SYSCALLS[key]).items():
        if number not in found and name not in known:
            found[number] = name
    return found


@functools.cache
def _names(arch: str) -> dict[str, int]:
    return {name: number for number, name in table(arch).items()}


def syscall_name(number: int, arch: str = "x86_64") -> str | None:
    """The name of syscall ``number`` on ``arch`` (``x86_64``/``i386`` or an audit arch code).

    ``None`` for a number the installed tables do not know (negative, or newer than them).
    """
    return table(canonical_arch(arch)).get(number)


def syscall_number(name: str, arch: str = "x86_64") -> int | None:
    """The number of syscall ``name`` on ``arch``, or ``None`` when it has none there."""
    return _names(canonical_arch(arch)).get(name)

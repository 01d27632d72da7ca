"""Syscall number <-> name tables for x86_64 and i386, read from the machine at first use.

Nothing here is typed by hand: the tables come from the kernel UAPI headers that
linux-libc-dev installs (``asm/unistd_64.h`` and ``asm/unistd_32.h``), or, when those are
missing, from ``ausyscall --dump`` (auditd). Numbers newer than the installed headers
(the running kernel may be newer than the userspace headers) resolve to ``None``; callers
count and log them rather than invent a name.
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

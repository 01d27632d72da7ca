"""Numbers the kernel reports -> the names AppArmor rules use.

Read at first use from the UAPI/libc headers installed on the machine (linux-libc-dev,
libc6-dev) and from Python's ``signal`` module, never typed by hand.
"""

from __future__ import annotations

import functools
import re
import signal
from pathlib import Path
from typing import Final

CAPABILITY_HEADER: Final = Path("/usr/include/linux/capability.h")
SOCKET_HEADER: Final = Path("/usr/include/x86_64-linux-gnu/bits/socket.h")
SOCKET_TYPE_HEADER: Final = Path("/usr/include/x86_64-linux-gnu/bits/socket_type.h")

#: The kernel's real-time signal range (the C library reserves the first two).
KERNEL_SIGRTMIN: Final = 32
KERNEL_SIGRTMAX: Final = 64

#: Protocol families with several C names, and the one AppArmor's network rules use.
_FAMILY_PREFERRED: Final = frozenset({"unix", "netlink"})


class NameTableError(RuntimeError):
    """A header the name tables come from is missing."""


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise NameTableError(
            f"cannot read {path}: {exc} (install linux-libc-dev/libc6-dev)"
        ) from exc


@functools.cache
def capabilities() -> dict[int, str]:
    """Capability number -> AppArmor name (``CAP_SYS_ADMIN`` -> ``sys_admin``)."""
    found = re.findall(r"^#define\s+CAP_(\w+)\s+(\d+)\s*$", _read(CAPABILITY_HEADER), re.M)
    table = {int(n): name.lower() for name, n in found if name not in ("LAST_CAP",)}
    if not table:
        raise NameTableError(f"no CAP_ definitions in {CAPABILITY_HEADER}")
    return table


@functools.cache
def families() -> dict[int, str]:
    """Protocol family number -> AppArmor name (``PF_INET6`` -> ``inet6``, 1 -> ``unix``)."""
    text = _read(SOCKET_HEADER)
    numbers: dict[str, int] = {}
    for name, n in re.findall(r"^#define\s+PF_(\w+)\s+(\d+)", text, re.M):
        numbers[name.lower()] = int(n)
    # Aliases such as "#define PF_UNIX PF_LOCAL".
    for name, other in re.findall(r"^#define\s+PF_(\w+)\s+PF_(\w+)", text, re.M):
        if other.lower() in numbers:
            numbers[name.lower()] = numbers[other.lower()]
    table: dict[int, str] = {}
    for spelled, number in numbers.items():
        if spelled in ("max", "unspec"):
            continue
        if number not in table or spelled in _FAMILY_PREFERRED:
            table[number] = spelled
    if not table:
        raise NameTableError(f"no PF_ definitions in {SOCKET_HEADER}")
    return table


@functools.cache
def socket_types() -> dict[int, str]:
    """Socket type number -> AppArmor name (``SOCK_STREAM`` -> ``stream``)."""
    found = re.findall(r"^\s*SOCK_(\w+)\s*=\s*(\d+)", _read(SOCKET_TYPE_HEADER), re.M)
    table = {int(n): name.lower() for name, n in found if int(n) < 16}
    if not table:
        raise NameTableError(f"no SOCK_ types in {SOCKET_TYPE_HEADER}")
    return table


def capability_name(number: int) -> str | None:
    return capabilities().get(number)


def family_name(number: int) -> str | None:
    return families().get(number)


def socket_type_name(number: int) -> str | None:
    return socket_types().get(number)


def signal_name(number: int) -> str | None:
    """``SIGTERM`` for 15. Real-time signals use AppArmor's word ``rtmin+N`` (kernel signal
    32 + N): the C library's ``SIGRTMIN`` is kernel 34, so ``SIGRTMIN+n`` would be ambiguous."""
    if KERNEL_SIGRTMIN <= number <= KERNEL_SIGRTMAX:
        return f"rtmin+{number - KERNEL_SIGRTMIN}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return None

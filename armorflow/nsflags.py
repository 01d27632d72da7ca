"""Linux namespace flags (``CLONE_NEW*``) and the syscalls that take them.

One table for the tracer (which records the flags), the model (which keeps the distinct
flag sets per syscall) and the Seccomp renderer (which allows only those). Values are
the kernel's UAPI ones (``linux/sched.h``); they are the same on every architecture.
"""

from __future__ import annotations

from typing import Final

CLONE_NEWTIME: Final = 0x00000080
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000

#: name -> bit, in the order the flags are written out.
NAMESPACE_FLAGS: Final[dict[str, int]] = {
    "CLONE_NEWNS": CLONE_NEWNS,
    "CLONE_NEWUTS": CLONE_NEWUTS,
    "CLONE_NEWIPC": CLONE_NEWIPC,
    "CLONE_NEWUSER": CLONE_NEWUSER,
    "CLONE_NEWPID": CLONE_NEWPID,
    "CLONE_NEWNET": CLONE_NEWNET,
    "CLONE_NEWCGROUP": CLONE_NEWCGROUP,
    "CLONE_NEWTIME": CLONE_NEWTIME,
}
ALL_NAMESPACES: Final = sum(NAMESPACE_FLAGS.values())

#: Syscall -> the namespace bits its flags argument can carry. clone(2)'s low byte is the
#: exit signal (CSIGNAL), so 0x80 there is part of a signal number, not CLONE_NEWTIME
#: (a time namespace can only be asked for through clone3, unshare or setns).
NAMESPACE_SYSCALLS: Final[dict[str, int]] = {
    "clone": ALL_NAMESPACES & ~CLONE_NEWTIME,
    "clone3": ALL_NAMESPACES,
    "unshare": ALL_NAMESPACES,
    "setns": ALL_NAMESPACES,
}

#: Syscall -> index of the register argument holding its flags, for a Seccomp argument
#: filter. clone3 is missing on purpose: its flags are in user memory (struct
#: clone_args), which a Seccomp filter cannot read.
FLAGS_ARGUMENT: Final[dict[str, int]] = {"clone": 0, "unshare": 0, "setns": 1}


def namespace_bits(syscall: str, flags: int | None) -> int:
    """The namespace bits of a call's ``flags`` (None, i.e. not seen, counts as none)."""
    return (flags or 0) & NAMESPACE_SYSCALLS.get(syscall, 0)


def flag_names(bits: int) -> list[str]:
    """``CLONE_NEW*`` names of the namespace bits in ``bits``, in table order."""
    return [name for name, bit in NAMESPACE_FLAGS.items() if bits & bit]

"""Syscalls that do the same thing, where the variant a program uses depends on its input.

A recording shows the variant a run happened to take. The C library, a language runtime
or the program itself picks another one when the input changes: tar waits on its
compressor's pipe with ``poll`` only when the archive is large enough to fill the pipe,
an event loop falls back from ``epoll_pwait`` to ``poll`` for a single descriptor, glibc
releases call ``stat`` as ``newfstatat`` or ``statx``. A profile that allows one member
and refuses its twin breaks the workload on the next input without keeping anything
out: each family below reaches the same kernel operation on the same objects (the file
rules of the AppArmor profile still decide which files), so allowing the family adds no
power the workload did not show.

The rule is "any member seen allows the family". Separately, :data:`TIMING_SYSCALLS`
are allowed in every profile: whether they happen at all depends on the speed of the
other side (tar's xz polls its pipe only when tar reads slower than xz writes).

What is *not* in a family, on purpose: read/write and their vectored or positional
forms (a program that never wrote does not start writing because of its input),
anything that creates namespaces, changes credentials, loads code or traces (those are
exactly what a profile must keep out), and pairs where one member has extra power
(``splice`` vs ``sendfile``, ``clone`` vs ``clone3``). docs/profiles.md shows the same
table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

#: Syscalls whose use depends on timing, not on what the program does: a recording may
#: never show them however faithfully the workload was exercised. Each only waits for,
#: or wakes, something the process already holds, so allowing it adds no power.
TIMING_SYSCALLS: Final[dict[str, str]] = {
    "restart_syscall": "the kernel resumes a sleep interrupted by a stop signal "
                       "(SIGSTOP/SIGCONT, a debugger, a checkpoint) with it",
    "poll": "a non-blocking write or read meets a full or empty pipe or socket "
            "(xz, curl, any event loop) and waits: only when the peer is slower",
    "ppoll": "as poll, with a signal mask (glibc's poll with a timeout on some builds)",
    "select": "as poll, older code",
    "pselect6": "as select, with a signal mask",
    "sched_yield": "spinning locks give up the CPU only under contention",
    "futex": "a lock is waited on only when another thread holds it",
    "nanosleep": "back-off after a busy resource (EAGAIN, EBUSY, a lock held)",
    "clock_nanosleep": "as nanosleep (glibc's sleep and usleep)",
}

#: (members, why they are one family). Every member must be a syscall name of one of the
#: profile's architectures; tests/test_render_seccomp.py checks them against libseccomp.
SYSCALL_FAMILIES: Final[tuple[tuple[frozenset[str], str], ...]] = (
    (frozenset({"poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait",
                "epoll_pwait2"}),
     "waiting for descriptors to become ready; libraries pick poll for a few descriptors, "
     "epoll for many, the p-variants when a signal mask or ns timeout is needed"),
    (frozenset({"nanosleep", "clock_nanosleep"}),
     "sleeping; glibc's sleep/usleep call clock_nanosleep, older code nanosleep"),
    (frozenset({"stat", "lstat", "fstat", "newfstatat", "statx"}),
     "file status; the C library and language runtimes translate one into another by "
     "version (Go and Rust use statx when the kernel has it)"),
    (frozenset({"access", "faccessat", "faccessat2"}),
     "permission checks; faccessat2 where AT_EACCESS or flags are asked for"),
    (frozenset({"utime", "utimes", "futimesat", "utimensat"}),
     "setting file times (copying a file's times after a copy or an extract)"),
    (frozenset({"getdents", "getdents64"}), "listing a directory"),
    (frozenset({"dup", "dup2", "dup3"}), "duplicating a descriptor"),
    (frozenset({"pipe", "pipe2"}), "making a pipe (pipe2 sets O_CLOEXEC at once)"),
    (frozenset({"accept", "accept4"}), "accepting a connection (accept4 sets flags at once)"),
    (frozenset({"wait4", "waitid"}), "waiting for a child process"),
    (frozenset({"eventfd", "eventfd2"}), "making an event descriptor"),
    (frozenset({"epoll_create", "epoll_create1"}), "making an epoll descriptor"),
    (frozenset({"signalfd", "signalfd4"}), "making a signal descriptor"),
    (frozenset({"inotify_init", "inotify_init1"}), "making an inotify descriptor"),
    (frozenset({"open", "openat", "openat2"}),
     "opening a file by name; which files is the AppArmor profile's decision"),
    (frozenset({"mkdir", "mkdirat"}), "making a directory, by name or relative to a dirfd"),
    (frozenset({"unlink", "unlinkat", "rmdir"}),
     "removing a name (unlinkat with AT_REMOVEDIR is rmdir)"),
    (frozenset({"rename", "renameat", "renameat2"}), "renaming"),
    (frozenset({"link", "linkat", "symlink", "symlinkat"}),
     "making a name for another file, hard or symbolic: what an extracted archive or a "
     "copied tree holds decides which; the AppArmor rules (l, w) decide where"),
    (frozenset({"readlink", "readlinkat"}), "reading a symbolic link"),
    (frozenset({"chmod", "fchmod", "fchmodat"}), "changing a file's mode"),
    (frozenset({"chown", "lchown", "fchown", "fchownat"}), "changing a file's owner"),
    (frozenset({"truncate", "ftruncate"}), "setting a file's length"),
    (frozenset({"mknod", "mknodat"}), "making a special file"),
)


def family_of(name: str) -> frozenset[str]:
    """The members of ``name``'s family, or the empty set when it has none."""
    for members, _why in SYSCALL_FAMILIES:
        if name in members:
            return members
    return frozenset()


def with_families(names: Iterable[str]) -> set[str]:
    """``names`` and every member of each family one of them belongs to."""
    out = set(names)
    for members, _why in SYSCALL_FAMILIES:
        if out & members:
            out |= members
    return out

"""Syscalls a container runtime makes under the workload's own Seccomp filter.

A runtime (runc, crun) installs the container's filter *before* it has finished starting
the process: without ``no_new_privs`` the filter goes in before the runtime drops
capabilities and switches user (installing it needs CAP_SYS_ADMIN then), and in every
case before the final ``execve``. Those last steps run under the profile, are not the
workload's behaviour, and are never seen by a tracer that watches the container's
process. Each entry says why it is here; docs/profiles.md has the same table.
"""

from __future__ import annotations

from typing import Final

RUNTIME_SYSCALLS: Final[dict[str, str]] = {
    # The final step: the runtime executes the entrypoint (crun uses fexecve, which is
    # execveat on an fd).
    "execve": "the runtime's exec of the container entrypoint runs under the filter",
    "execveat": "crun starts the entrypoint with fexecve (execveat on an fd)",
    # Dropping privileges after the filter is in place (no_new_privs off).
    "capget": "the runtime reads capability sets before dropping to the container's",
    "capset": "the runtime sets the container's capability sets",
    "prctl": "PR_SET_KEEPCAPS / PR_CAPBSET_DROP / PR_SET_NO_NEW_PRIVS while dropping",
    "setgroups": "the runtime sets the container user's supplementary groups",
    "setgid": "runc switches to the container's group (Go's syscall.Setgid)",
    "setuid": "runc switches to the container's user (Go's syscall.Setuid)",
    "setresgid": "crun switches to the container's group with setresgid",
    "setresuid": "crun switches to the container's user with setresuid",
    "chdir": "the runtime enters the container's working directory",
    "getcwd": "runc checks that the working directory it entered is inside the container",
    # Handing over: runc opens its exec fifo and writes one byte, then waits for start.
    "openat": "runc opens its exec fifo (/proc/self/fd/N) to signal it is ready",
    "write": "runc writes the ready byte to the exec fifo / sync pipe",
    "read": "the runtime reads its sync pipe from the parent",
    "close": "the runtime closes its own descriptors before exec",
    "close_range": "runc >= 1.1 marks all inherited descriptors close-on-exec at once",
    "fcntl": "fallback for close_range: FD_CLOEXEC one descriptor at a time",
    "fstatfs": "runc checks that /proc/self/fd is on procfs before it closes descriptors",
    "getdents64": "runc lists /proc/self/fd to mark its descriptors close-on-exec",
    "newfstatat": "the runtime stats the entrypoint and the exec fifo",
    "faccessat": "runc (Go's exec.LookPath) checks the entrypoint is executable; Go falls "
                 "back to faccessat when faccessat2 is refused",
    "fstat": "the runtime and the C library check descriptors before exec",
    # The Go runtime inside runc keeps running until execve replaces it.
    "futex": "Go runtime: thread parking and wake-ups while runc waits",
    "clone": "Go runtime: a new OS thread while runc waits (namespace flags stay refused)",
    "getppid": "runc checks that its parent is still there after setting the death signal",
    "nanosleep": "Go runtime: scheduler back-off (usleep)",
    "sched_yield": "Go runtime: scheduler spinning",
    "rt_sigreturn": "return from any signal handler (Go preemption signals)",
    "rt_sigprocmask": "the runtime restores the signal mask before exec",
    "rt_sigaction": "the runtime resets signal dispositions before exec",
    "sigaltstack": "Go runtime: per-thread signal stacks",
    "tgkill": "Go runtime: asynchronous preemption of its own threads",
    "getpid": "Go runtime and C library: signal delivery to self",
    "gettid": "Go runtime: thread identity for preemption",
    "mmap": "Go runtime heap growth (and the dynamic loader after exec)",
    "munmap": "Go runtime heap release (and the dynamic loader after exec)",
    "madvise": "Go runtime: returning heap pages to the kernel",
    "epoll_pwait": "Go runtime netpoller waiting on the sync pipe",
    "epoll_ctl": "Go runtime netpoller registering the sync pipe",
    "exit": "a runtime thread exiting",
    "exit_group": "the runtime exiting when a start step fails (so the error is reported)",
    # The entrypoint's dynamic loader runs before a tracer that attaches to the new
    # container can attribute its events, so the first exec's loader calls are
    # allowed even when they were not recorded.
    "brk": "dynamic loader: heap set-up of the entrypoint",
    "arch_prctl": "dynamic loader: thread pointer (TLS) set-up on x86_64",
    "mprotect": "dynamic loader: RELRO and segment protections",
    "access": "dynamic loader: /etc/ld.so.preload probe",
    "pread64": "dynamic loader: reading ELF program headers",
    "set_tid_address": "C library start-up of the entrypoint",
    "set_robust_list": "C library start-up of the entrypoint",
    "rseq": "C library (glibc >= 2.35) registers restartable sequences at start-up",
    "prlimit64": "C library start-up reads the stack limit",
}

"""Run a command as a local "container": new mount and pid namespaces, held before exec.

The command is started in two steps so a tracer can put its mount namespace in the
kernel filter before the command runs its first instruction::

    box = LocalContainer(["sh", "-c", "id"]).spawn()   # namespaces made, exec pending
    tracer.add_target(attribution, mntns=box.mntns, pid=box.pid)
    box.release()                                      # exec now
    code = box.wait()

Layout: the spawner forks an intermediate process that unshares the pid namespace (it
stays in the host mount namespace and is never traced) and forks the container's pid 1,
which unshares the mount namespace, makes its mounts private, mounts its own /proc,
reports ready, waits for the go-ahead, and execs the command.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import select
import time
from dataclasses import dataclass, field
from typing import Final

CLONE_NEWNS: Final = 0x00020000
CLONE_NEWPID: Final = 0x20000000
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class LocalRunError(RuntimeError):
    """The local container could not be set up; carries the child's reason."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None
        ),
        f"mount {target}",
    )


def _read_exact(fd: int, timeout_s: float) -> bytes:
    """Read one message (up to 4 KiB) from a pipe, or b'' at EOF; fail after timeout."""
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        raise LocalRunError(f"no answer from the container set-up within {timeout_s}s")
    return os.read(fd, 4096)


@dataclass
class LocalContainer:
    argv: list[str]
    mount_proc: bool = True
    setup_timeout_s: float = 30.0
    pid: int = 0  # host pid of the container's pid 1 (the command)
    mntns: int = 0  # its mount namespace inode
    _spawner: int = 0
    _go_w: int = -1
    _exit_code: int | None = None
    #: Resource use of the command and every descendant it waited for, once it ended.
    rusage: resource.struct_rusage | None = None
    _released: bool = field(default=False)

    def spawn(self) -> LocalContainer:
        if not self.argv:
            raise LocalRunError("no command to run")
        pid_r, pid_w = os.pipe()
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        spawner = os.fork()
        if spawner == 0:  # pragma: no cover - runs in the child
            os.close(pid_r)
            os.close(ready_r)
            os.close(go_w)
            self._spawner_main(pid_w, ready_w, go_r)
        os.close(pid_w)
        os.close(ready_w)
        os.close(go_r)
        self._spawner = spawner
        self._go_w = go_w
        try:
            pid_msg = _read_exact(pid_r, self.setup_timeout_s)
            if not pid_msg.startswith(b"P"):
                raise LocalRunError(pid_msg.decode(errors="replace") or "set-up process died")
            self.pid = int(pid_msg[1:])
            ready = _read_exact(ready_r, self.setup_timeout_s)
            if ready != b"R":
                raise LocalRunError(ready.decode(errors="replace") or "container pid 1 died")
            self.mntns = os.stat(f"/proc/{self.pid}/ns/mnt").st_ino
        except BaseException:
            self.kill()
            raise
        finally:
            os.close(pid_r)
            os.close(ready_r)
        return self

    def _spawner_main(self, pid_w: int, ready_w: int, go_r: int) -> None:  # pragma: no cover
        code = 127
        try:
            unshare(CLONE_NEWPID)
            child = os.fork()
            if child == 0:
                os.close(pid_w)
                self._init_main(ready_w, go_r)
            os.close(ready_w)
            os.close(go_r)
            os.write(pid_w, b"P%d" % child)
            os.close(pid_w)
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(pid_w, f"E{exc}".encode())
        finally:
            os._exit(code)

    def _init_main(self, ready_w: int, go_r: int) -> None:  # pragma: no cover
        try:
            unshare(CLONE_NEWNS)
            # Keep our mounts (/proc below) out of the host's mount table.
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            if self.mount_proc:
                mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            # Close inherited descriptors now, while untraced, so that only the command's
            # own syscalls follow the go-ahead.
            low, high = sorted((ready_w, go_r))
            os.closerange(3, low)
            os.closerange(low + 1, high)
            os.closerange(high + 1, 65536)
            os.write(ready_w, b"R")
            os.close(ready_w)
            # The read started before the target was registered, so none of these
            # syscalls is recorded; go_r is close-on-exec, so exec is the next one.
            if os.read(go_r, 1) != b"G":
                os._exit(125)  # the parent gave up before releasing us
            os.execvp(self.argv[0], self.argv)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(ready_w, f"E{exc}".encode())
            os._exit(127)

    def release(self) -> None:
        """Let the command exec."""
        if self._released:
            return
        os.write(self._go_w, b"G")
        os.close(self._go_w)
        self._released = True

    def poll(self) -> int | None:
        """The command's exit code once it has ended, else None."""
        if self._exit_code is None and self._spawner:
            done, status, usage = os.wait4(self._spawner, os.WNOHANG)
            if done:
                self._exit_code = os.waitstatus_to_exitcode(status)
                self.rusage = usage
        return self._exit_code

    def wait(self, timeout_s: float | None = None) -> int:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.argv[0]} still running after {timeout_s}s")
            time.sleep(0.02)
        return code

    def kill(self) -> None:
        """Stop the command (killing pid 1 ends its whole pid namespace)."""
        for pid in (self.pid, self._spawner):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        if not self._released and self._go_w >= 0:
            with contextlib.suppress(OSError):
                os.close(self._go_w)
            self._released = True
        if self._spawner:
            with contextlib.suppress(TimeoutError, ChildProcessError):
                self.wait(5)

"""Turn an ``strace -f -y`` log into the (path, AppArmor permission) requests it made.

The mapping is the tracer's (docs/events.md, ``tests/test_tracer_paths.py``): opens ``r``,
``w`` (writing, creating, truncating) or ``a`` (appending); create, delete, chmod, chown,
truncate, mknod and symlink ``w``; a rename ``rw`` on the old name and ``w`` on the new
one (an exchange ``rw`` on both); a hard link ``l`` on the new name with its target; an
executable mapping of a file ``m``; a lock ``k`` (exclusive ``wk``); bind of a path socket
``w``, connect ``rw``; execve ``x``. Only calls that succeeded count (a failed lookup is
never mediated). A directory's name ends in ``/``. Names are made absolute from the
``AT_FDCWD</dir>`` / ``fd</path>`` decorations of ``-y`` or the process's working
directory, and resolved as the kernel would (symlinks of the parent; of the last
component too where the call follows it), except below ``/proc``, which is per process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final

#: What to ask strace for.
STRACE_EXPR: Final = ("trace=%file,mmap,flock,fcntl,bind,connect,fchmod,fchown,"
                      "clone,clone3,fork,vfork")

_LINE: Final = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+|\?)(.*)$")
_UNFINISHED: Final = re.compile(r"^(\d+)\s+(.*) <unfinished \.\.\.>$")
_RESUMED: Final = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
_DECORATION: Final = re.compile(r"<(/[^>]*)>")


@dataclass(frozen=True, slots=True)
class Op:
    """One request AppArmor decides: ``perms`` on ``path`` (``target`` for a link)."""

    path: str
    perms: str
    target: str | None = None
    syscall: str = ""


def _unescape(text: str) -> str:
    """A C string as strace prints it (quotes removed) back to its text."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            if n in "01234567":
                m = re.match(r"[0-7]{1,3}", text[i + 1:])
                assert m
                out.append(int(m.group(0), 8) & 0xFF)
                i += 1 + len(m.group(0))
                continue
            out.extend({"n": b"\n", "t": b"\t", "r": b"\r", "v": b"\v", "f": b"\f"}
                       .get(n, n.encode()))
            i += 2
            continue
        out.extend(c.encode("utf-8", "surrogateescape"))
        i += 1
    return out.decode("utf-8", "surrogateescape")


def split_args(text: str) -> list[str]:
    """Top-level arguments of a printed call."""
    args: list[str] = []
    depth = 0
    quoted = False
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            cur.append(c)
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
            cur.append(c)
        elif c in "([{<":
            depth += 1
            cur.append(c)
        elif c in ")]}>":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        args.append("".join(cur).strip())
    return args


def _string(arg: str) -> str | None:
    m = re.match(r'^"(.*)"(\.\.\.)?$', arg, re.DOTALL)
    return _unescape(m.group(1)) if m else None


def _fd_path(arg: str) -> str | None:
    m = _DECORATION.search(arg)
    return _unescape(m.group(1)) if m else None


def _resolve(path: str, follow: bool) -> str:
    path = os.path.normpath(path)
    if path.startswith("/proc/") or path == "/proc":
        return path
    if follow:
        return os.path.realpath(path)
    parent, name = os.path.split(path)
    return os.path.join(os.path.realpath(parent), name) if name else path


class StraceOps:
    """Reads a log; ``ops`` are the distinct requests in order of first appearance."""

    def __init__(self, start_cwd: str):
        self.start_cwd = start_cwd
        self.cwd: dict[int, str] = {}
        self.parent: dict[int, int] = {}
        self.ops: dict[Op, None] = {}

    def _cwd(self, pid: int) -> str:
        seen: set[int] = set()
        while pid not in self.cwd and pid in self.parent and pid not in seen:
            seen.add(pid)
            pid = self.parent[pid]
        return self.cwd.get(pid, self.start_cwd)

    def _name(self, pid: int, dirfd: str | None, arg: str, follow: bool) -> str | None:
        name = _string(arg)
        if name is None or name == "":
            return None
        if not name.startswith("/"):
            base = (_fd_path(dirfd) if dirfd is not None else None) or self._cwd(pid)
            name = os.path.join(base, name)
        return _resolve(name, follow)

    def _add(self, path: str | None, perms: str, sc: str, *, directory: bool = False,
             target: str | None = None) -> None:
        if not path or not path.startswith("/"):
            return
        if directory or (os.path.isdir(path) and not os.path.islink(path)):
            path = path.rstrip("/") + "/"
        self.ops[Op(path, perms, target, sc)] = None

    def read(self, lines: list[str]) -> None:
        pending: dict[int, str] = {}
        full: list[str] = []
        for line in lines:
            line = line.rstrip("\n")
            m = _UNFINISHED.match(line)
            if m:
                pending[int(m.group(1))] = f"{m.group(1)} {m.group(2)}"
                continue
            m = _RESUMED.match(line)
            if m:
                pid = int(m.group(1))
                line = pending.pop(pid, f"{pid} {m.group(2)}(") + m.group(3)
            full.append(line)
        parsed = []
        for line in full:
            m = _LINE.match(line)
            if not m:
                continue
            pid, sc, args, ret, rest = (int(m.group(1)), m.group(2), m.group(3), m.group(4),
                                        m.group(5))
            if sc in ("clone", "clone3", "fork", "vfork") and ret.isdigit():
                self.parent[int(ret)] = pid
            parsed.append((pid, sc, split_args(args), ret, rest))
        for pid, sc, a, ret, rest in parsed:
            if ret == "?" or ret.startswith("-"):
                continue
            self._one(pid, sc, a, rest)

    def _one(self, pid: int, sc: str, a: list[str], rest: str) -> None:
        for arg in a[:1]:
            if arg.startswith("AT_FDCWD<") and pid not in self.cwd:
                self.cwd[pid] = _fd_path(arg) or self.start_cwd
        if sc in ("open", "openat", "openat2", "creat"):
            flags = {"open": a[1] if len(a) > 1 else "", "openat": a[2] if len(a) > 2 else "",
                     "openat2": a[2] if len(a) > 2 else "", "creat": "O_WRONLY|O_CREAT|O_TRUNC"}[sc]
            if "O_PATH" in flags:
                return
            path = _fd_path(rest)
            perms = ""
            if "O_WRONLY" not in flags:
                perms += "r"
            if "O_WRONLY" in flags or "O_RDWR" in flags:
                perms += "a" if "O_APPEND" in flags else "w"
            if ("O_CREAT" in flags or "O_TRUNC" in flags) and "w" not in perms:
                perms += "w"
            self._add(path, perms, sc, directory="O_DIRECTORY" in flags)
        elif sc in ("execve", "execveat"):
            name = self._name(pid, a[0] if sc == "execveat" else None,
                              a[1] if sc == "execveat" else a[0], True)
            if name:
                self.ops[Op(name, "x", None, sc)] = None
        elif sc in ("chdir", "fchdir"):
            path = _fd_path(a[0]) if sc == "fchdir" else self._name(pid, None, a[0], True)
            if path:
                self.cwd[pid] = path
        elif sc in ("mkdir", "rmdir"):
            self._add(self._name(pid, None, a[0], False), "w", sc, directory=True)
        elif sc == "mkdirat":
            self._add(self._name(pid, a[0], a[1], False), "w", sc, directory=True)
        elif sc == "unlink":
            self._add(self._name(pid, None, a[0], False), "w", sc)
        elif sc == "unlinkat":
            self._add(self._name(pid, a[0], a[1], False), "w", sc,
                      directory="AT_REMOVEDIR" in a[2])
        elif sc in ("rename", "renameat", "renameat2"):
            if sc == "rename":
                old, new = self._name(pid, None, a[0], False), self._name(pid, None, a[1], False)
            else:
                old, new = self._name(pid, a[0], a[1], False), self._name(pid, a[2], a[3], False)
            exchange = sc == "renameat2" and "RENAME_EXCHANGE" in a[4]
            is_dir = bool(new) and os.path.isdir(new or "") and not os.path.islink(new or "")
            self._add(old, "rw", sc, directory=is_dir)
            self._add(new, "rw" if exchange else "w", sc, directory=is_dir)
        elif sc in ("link", "linkat"):
            if sc == "link":
                old, new = self._name(pid, None, a[0], False), self._name(pid, None, a[1], False)
            else:
                old, new = self._name(pid, a[0], a[1], False), self._name(pid, a[2], a[3], False)
            if new:
                self._add(new, "l", sc, target=old)
        elif sc in ("symlink", "symlinkat"):
            self._add(self._name(pid, a[1] if sc == "symlinkat" else None, a[-1], False), "w", sc)
        elif sc in ("chmod", "chown", "truncate"):
            self._add(self._name(pid, None, a[0], True), "w", sc)
        elif sc in ("lchown", "mknod"):
            self._add(self._name(pid, None, a[0], False), "w", sc)
        elif sc in ("fchmodat", "fchownat", "mknodat"):
            follow = sc != "mknodat" and not any("AT_SYMLINK_NOFOLLOW" in x for x in a[2:])
            self._add(self._name(pid, a[0], a[1], follow), "w", sc)
        elif sc in ("fchmod", "fchown"):
            self._add(_fd_path(a[0]), "w", sc)
        elif sc == "mmap":
            if len(a) >= 5 and "PROT_EXEC" in a[2] and "MAP_ANONYMOUS" not in a[3]:
                self._add(_fd_path(a[4]), "m", sc)
        elif sc == "flock":
            if "LOCK_UN" not in a[1]:
                self._add(_fd_path(a[0]), "wk" if "LOCK_EX" in a[1] else "k", sc)
        elif sc == "fcntl":
            if len(a) >= 3 and re.search(r"\bF_(OFD_)?SETLKW?(64)?\b", a[1]):
                if "F_WRLCK" in a[2]:
                    self._add(_fd_path(a[0]), "wk", sc)
                elif "F_RDLCK" in a[2]:
                    self._add(_fd_path(a[0]), "k", sc)
        elif sc in ("bind", "connect"):
            m = re.search(r'sun_path="((?:[^"\\]|\\.)*)"', a[1] if len(a) > 1 else "")
            if m and "AF_UNIX" in a[1]:
                name = _unescape(m.group(1))
                if not name.startswith("/"):
                    name = os.path.join(self._cwd(pid), name)
                self._add(_resolve(name, False), "w" if sc == "bind" else "rw", sc)

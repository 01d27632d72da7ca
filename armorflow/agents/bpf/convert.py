"""Ring buffer records -> schema v1 events, attributed to the container they came from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from armorflow.agents.attribution import Attribution
from armorflow.agents.bpf import names
from armorflow.agents.bpf.records import (
    EV_CAPABILITY,
    EV_EXEC,
    EV_FILE,
    EV_MOUNT,
    EV_NETWORK,
    EV_PTRACE,
    EV_SIGNAL,
    EV_SYSCALL,
    FILE_KIND_DIR,
    FILE_KIND_UNKNOWN,
    FLAG_COMPAT,
    FLAG_NAMED,
    FLAG_NS_FLAGS,
    Record,
)
from armorflow.agents.syscalls import syscall_name
from armorflow.events import Event, make_event

#: The peer name of a process that is not under modeling (AppArmor's spelling).
UNCONFINED: Final = "unconfined"

#: common.h's PERM_* bits, in the schema's letter order (AppArmor's letters).
_PERM_LETTERS: Final = ((1, "r"), (2, "w"), (4, "a"), (8, "m"), (16, "l"), (32, "k"))
_MOUNT_OPS: Final = {1: "mount", 2: "remount", 3: "umount", 4: "pivot_root"}
_PTRACE_TRACEME: Final = 0


class SkipRecord(Exception):
    """A record that yields no event; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


#: Target id -> attribution (None when unknown).
TargetLookup = Callable[[int], Attribution | None]
#: (caller tgid, pid as the caller named it) -> target id of that process, or 0.
PeerResolver = Callable[[int, int], int]
#: (tgid, target id, absolute path) -> (is a directory, owner uid) of that path as the
#: process sees it (its last component not followed), or None when it cannot be looked at.
Inspector = Callable[[int, int, str], tuple[bool, int] | None]


def _perms(bits: int) -> str:
    return "".join(letter for bit, letter in _PERM_LETTERS if bits & bit)


def _path(record: Record, directory: bool = False) -> str:
    if record.truncated:
        raise SkipRecord("path_truncated", f"pid {record.tgid} {record.comm}")
    try:
        path = record.walked_path()
    except UnicodeDecodeError:
        raise SkipRecord("path_not_utf8", repr(record.data[:80])) from None
    if path is None or (path == "/" and not directory):
        # Pipes, sockets and other pseudo files opened through /proc/<pid>/fd have no
        # name in any mount; AppArmor does not mediate them by path either.
        raise SkipRecord("no_path")
    return _as_directory(path) if directory else path


def _as_directory(path: str) -> str:
    """AppArmor's name of a directory: with a trailing slash."""
    return path if path.endswith("/") else path + "/"


def _normalise(path: str) -> str:
    """An absolute name with "", "." and ".." segments resolved lexically."""
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    return "/" + "/".join(parts)


def _joined(group: list[bytes]) -> str:
    """A name group (records.Record.name_groups) as an absolute path."""
    name = group[0].decode()
    if not name.startswith("/"):
        base = "/".join(part.decode() for part in reversed(group[1:]))
        name = f"/{base}/{name}"
    return _normalise(name)


def _named_events(
    record: Record, common: dict[str, object], inspect: Inspector | None
) -> list[Event]:
    """The events of an operation on names (paths.c): the first name with args[0]'s
    permissions; a second name is either its old_path (args[3] == 0: a hard link's
    target) or an event of its own with args[3]'s (a rename's new name)."""
    perms, creates, kinds_fsuid, perms2 = record.args
    groups = record.name_groups()
    if record.truncated or not groups:
        raise SkipRecord("path_truncated", f"pid {record.tgid} {record.comm}")
    try:
        paths = [_joined(group) for group in groups[:2]]
    except UnicodeDecodeError:
        raise SkipRecord("path_not_utf8", repr(record.data[:80])) from None
    kinds = [kinds_fsuid & 0xF, (kinds_fsuid >> 4) & 0xF]
    fsuid = kinds_fsuid >> 32
    looks: list[tuple[bool, int] | None] = [None, None]
    if inspect is not None and not creates:
        looks = [inspect(record.tgid, record.target, path) for path in paths] + [None]
        if looks[0] is None and len(paths) == 2 and perms2:
            looks[0] = looks[1]  # a rename: the old name is gone, the inode is the new one's

    def name(index: int) -> str:
        kind, look = kinds[index], looks[index]
        directory = kind == FILE_KIND_DIR or (
            kind == FILE_KIND_UNKNOWN and look is not None and look[0]
        )
        path = paths[index]
        return _as_directory(path) if directory and path != "/" else path

    def owner(index: int) -> bool:
        look = looks[index]
        return bool(creates) or (look is not None and look[1] == fsuid)

    if paths[0] == "/" and kinds[0] != FILE_KIND_DIR:
        raise SkipRecord("no_path")
    first: dict[str, object] = {"path": name(0), "perms": _perms(perms), "owner": owner(0)}
    if len(paths) == 2 and not perms2:
        first["old_path"] = name(1)
    out = [make_event("file", **first, **common)]
    if len(paths) == 2 and perms2:
        out.append(make_event("file", path=name(1), perms=_perms(perms2), owner=owner(1),
                              **common))
    return out


def _peer(lookup: TargetLookup, target: int) -> str:
    found = lookup(target) if target else None
    return found.profile if found else UNCONFINED


def convert(
    record: Record,
    ts: int,
    lookup: TargetLookup,
    resolve_peer: PeerResolver,
    inspect: Inspector | None = None,
) -> list[Event]:
    """The schema events of one record (signals and ptrace may give one per side, a
    rename one per name). ``inspect`` tells directories from files, and owners, for
    operations that name an object the kernel did not look at (chmod, rename...)."""
    own = lookup(record.target)
    if own is None:
        raise SkipRecord("unknown_target", str(record.target))
    common = {"ts": ts, "pid": record.tgid, "comm": record.comm, **own.fields()}
    kind = record.kind
    a0, a1, a2, _a3 = record.args
    if kind == EV_EXEC:
        return [make_event("exec", path=_path(record), **common)]
    if kind == EV_FILE:
        if record.flags & FLAG_NAMED:
            return _named_events(record, common, inspect)
        path = _path(record, directory=(a2 & 0xF) == FILE_KIND_DIR)
        return [make_event("file", path=path, perms=_perms(a0), owner=bool(a1), **common)]
    if kind == EV_SYSCALL:
        arch = "i386" if record.flags & FLAG_COMPAT else "x86_64"
        name = syscall_name(a0, arch)
        if name is None:
            raise SkipRecord("unknown_syscall", f"{arch} {a0}")
        if record.flags & FLAG_NS_FLAGS:
            return [make_event("syscall", name=name, flags=a1, **common)]
        return [make_event("syscall", name=name, **common)]
    if kind == EV_CAPABILITY:
        cap = names.capability_name(a0)
        if cap is None:
            raise SkipRecord("unknown_capability", str(a0))
        return [make_event("capability", name=cap, **common)]
    if kind == EV_NETWORK:
        family = names.family_name(a0)
        sock_type = names.socket_type_name(a1)
        if family is None or sock_type is None:
            raise SkipRecord("unknown_socket", f"family {a0} type {a1}")
        return [make_event("network", family=family, sock_type=sock_type, protocol=a2, **common)]
    if kind == EV_SIGNAL:
        return _signal_events(record, common, lookup)
    if kind == EV_PTRACE:
        return _ptrace_events(record, common, lookup, resolve_peer)
    if kind == EV_MOUNT:
        parts = record.strings()
        op = _MOUNT_OPS.get(a0)
        if op is None or not parts or not parts[0]:
            raise SkipRecord("bad_mount", f"op {a0}")
        path = parts[0].decode(errors="strict")
        fstype = parts[1].decode() if len(parts) > 1 else ""
        return [make_event("mount", op=op, path=path, fstype=fstype, **common)]
    raise SkipRecord("unknown_kind", str(kind))


def _signal_events(record: Record, common: dict[str, object], lookup: TargetLookup) -> list[Event]:
    sig, sender, receiver, receiver_tgid = record.args
    name = names.signal_name(sig)
    if name is None:
        raise SkipRecord("unknown_signal", str(sig))
    out: list[Event] = []
    if sender:
        out.append(
            make_event(
                "signal", signal=name, direction="send", peer=_peer(lookup, receiver), **common
            )
        )
    receiving = lookup(receiver) if receiver else None
    if receiving is not None:
        out.append(
            make_event(
                "signal", signal=name, direction="receive", peer=_peer(lookup, sender),
                **{**common, **receiving.fields(), "pid": receiver_tgid, "comm": ""},
            )
        )
    return out


def _ptrace_events(
    record: Record, common: dict[str, object], lookup: TargetLookup, resolve_peer: PeerResolver
) -> list[Event]:
    request, ns_pid, parent_target, parent_tgid = record.args
    caller = record.flags  # the caller's own target id, 0 when only its parent is one
    if request == _PTRACE_TRACEME:
        tracer, tracee = parent_target, caller
        tracer_pid = parent_tgid
    else:
        tracer, tracee = caller, resolve_peer(record.tgid, ns_pid)
        tracer_pid = record.tgid
    out: list[Event] = []
    tracer_attr = lookup(tracer) if tracer else None
    tracee_attr = lookup(tracee) if tracee else None
    if tracer_attr is not None:
        out.append(
            make_event(
                "ptrace", mode="trace", peer=_peer(lookup, tracee),
                **{**common, **tracer_attr.fields(), "pid": tracer_pid},
            )
        )
    if tracee_attr is not None:
        out.append(
            make_event(
                "ptrace", mode="tracedby", peer=_peer(lookup, tracer),
                **{**common, **tracee_attr.fields()},
            )
        )
    return out

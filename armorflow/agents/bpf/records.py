"""The binary record the BPF programs write to the ring buffer (``struct event`` in
``common.h``), decoded into a typed value; no schema knowledge here."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

# Kinds and counter slots, as common.h numbers them.
EV_EXEC: Final = 1
EV_FILE: Final = 2
EV_SYSCALL: Final = 3
EV_CAPABILITY: Final = 4
EV_NETWORK: Final = 5
EV_SIGNAL: Final = 6
EV_PTRACE: Final = 7
EV_MOUNT: Final = 8

CNT_OBSERVED: Final = 0
CNT_EMITTED: Final = 1
CNT_DROPPED: Final = 2
CNT_TRUNCATED: Final = 3
CNT_UNMEDIATED: Final = 4

FLAG_TRUNCATED: Final = 1
FLAG_COMPAT: Final = 2
FLAG_NS_FLAGS: Final = 4  # EV_SYSCALL: args[1] holds the call's CLONE_NEW* bits
FLAG_NAMED: Final = 8  # EV_FILE: data holds name groups (paths.c), see Record.name_groups

# EV_FILE object kinds (args[2] & 0xf; of a named record's second name: >> 4 & 0xf).
FILE_KIND_FILE: Final = 0
FILE_KIND_DIR: Final = 1
FILE_KIND_UNKNOWN: Final = 2

# u32 kind, target, tgid, tid; u64 ts; char comm[16]; u64 arg[4]; u32 data_len, flags
_HEADER: Final = struct.Struct("<IIIIQ16s4QII")
HEADER_SIZE: Final = _HEADER.size


class RecordError(ValueError):
    """A ring buffer record that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class Record:
    kind: int
    target: int
    tgid: int
    tid: int
    ktime_ns: int
    comm: str
    args: tuple[int, int, int, int]
    flags: int
    data: bytes

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TRUNCATED)

    def strings(self) -> list[bytes]:
        """The NUL-terminated strings in ``data``."""
        parts = self.data.split(b"\0")
        if parts and parts[-1] == b"":
            parts.pop()
        return parts

    def walked_path(self) -> str | None:
        """A path written by ``put_path`` (names leaf first), or ``None`` if it has none."""
        names = self.strings()
        if not names:
            return None
        return "/" + "/".join(name.decode() for name in reversed(names))

    def name_groups(self) -> list[list[bytes]]:
        """A named record's groups (paths.c): each is the name as passed, then, for a
        relative name, the walked names of its base directory, leaf first; an empty
        string separates two groups."""
        groups: list[list[bytes]] = [[]]
        for part in self.strings():
            if part:
                groups[-1].append(part)
            else:
                groups.append([])
        return [g for g in groups if g]


def decode(raw: bytes) -> Record:
    if len(raw) < HEADER_SIZE:
        raise RecordError(f"record of {len(raw)} bytes is shorter than its header")
    kind, target, tgid, tid, ts, comm, a0, a1, a2, a3, data_len, flags = _HEADER.unpack_from(raw)
    data = raw[HEADER_SIZE : HEADER_SIZE + data_len]
    if len(data) != data_len:
        raise RecordError(f"record says {data_len} data bytes but carries {len(data)}")
    return Record(
        kind=kind,
        target=target,
        tgid=tgid,
        tid=tid,
        ktime_ns=ts,
        comm=comm.split(b"\0", 1)[0].decode(errors="replace"),
        args=(a0, a1, a2, a3),
        flags=flags,
        data=data,
    )

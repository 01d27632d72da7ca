"""The eBPF tracer: load the programs once, choose targets, turn records into events.

Usage::

    tracer = Tracer(node="node-1")
    tracer.start()                      # compiles and attaches (a few seconds)
    tid = tracer.add_target(Attribution(profile="demo"), mntns=4026532601)
    for event in tracer.poll(100):      # schema v1 events of the targets only
        ...
    tracer.stats()                      # observed / emitted / drops / published / skipped
    tracer.stop()

Every event a target produces is filtered and deduplicated in the kernel, so ``poll``
returns each distinct behaviour of a target once. Drops (the ring buffer full) are
counted in the kernel and reported by :meth:`Tracer.stats`, never hidden.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import socket
import stat
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from armorflow.agents.attribution import Attribution
from armorflow.agents.bpf import loader
from armorflow.agents.bpf.convert import SkipRecord, convert
from armorflow.agents.bpf.records import (
    CNT_DROPPED,
    CNT_EMITTED,
    CNT_OBSERVED,
    CNT_TRUNCATED,
    CNT_UNMEDIATED,
    EV_FILE,
    FLAG_NAMED,
    Record,
    RecordError,
    decode,
)
from armorflow.counters import CounterSet
from armorflow.events import Event, EventError

log = logging.getLogger(__name__)

#: Attributions of removed targets kept for records still in flight.
_RETIRED_KEEP = 4096
#: File events remembered to drop repeats the kernel does not recognise (long names).
SEEN_OPENS_LIMIT = 65536
#: Names a target operated on, remembered with what they were (directory, owner).
NAMES_SEEN_LIMIT = 65536


@dataclass
class TracerStats(CounterSet):
    """Counters of one tracer. ``observed`` counts target behaviours seen by the kernel
    programs before deduplication; ``emitted`` the records that reached the ring buffer;
    ``drops`` those lost because it was full; ``published`` the schema events handed out."""

    observed: int = 0
    emitted: int = 0
    drops: int = 0
    truncated_paths: int = 0
    #: capability checks that bypass the LSM layer (AppArmor never sees them), not reported
    unmediated_capability_checks: int = 0
    received: int = 0
    published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)



def mount_namespace_of(pid: int) -> int:
    """The mount namespace inode of process ``pid`` (what the kernel filter keys on)."""
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


class TracerError(RuntimeError):
    """Misuse of the tracer (not started, bad target)."""


class Tracer:
    """Load once, then add and remove targets while it runs."""

    def __init__(
        self,
        *,
        node: str | None = None,
        sizes: loader.Sizes | None = None,
        on_event: Callable[[Event], None] | None = None,
    ):
        self.node = node or socket.gethostname()
        self.sizes = sizes or loader.Sizes()
        self._on_event = on_event
        self._bpf: Any = None
        self._targets: dict[int, Attribution] = {}
        self._retired: dict[int, Attribution] = {}
        self._target_keys: dict[int, tuple[int | None, int | None]] = {}
        self._next_id = 1
        self._batch: list[Event] = []
        self._stats = TracerStats()
        #: (target, path, perms, owner, old_path) of the file events handed out, most
        #: recent last.
        self._seen_opens: OrderedDict[tuple[int, str, str, object, object], None] = OrderedDict()
        #: (target, name without trailing slash) -> (was a directory, owner uid or -1) as
        #: last reported. A short ``mkdir d; chmod 700 d; rmdir d`` has removed ``d``
        #: before chmod's record is read, so looking at the name finds nothing; what
        #: mkdir's record said of it still holds.
        self._names_seen: OrderedDict[tuple[int, str], tuple[bool, int]] = OrderedDict()
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC; events carry wall-clock ns.
        self._clock_offset = time.time_ns() - time.monotonic_ns()

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> Tracer:
        if self._bpf is not None:
            return self
        self._bpf = loader.load(self.sizes)
        self._bpf[b"events"].open_ring_buffer(self._on_record)
        return self

    def stop(self) -> None:
        """Drain what is left in the ring buffer, then detach everything."""
        if self._bpf is None:
            return
        self.drain()
        final = self.stats()
        if final.drops:
            log.warning("tracer lost %d record(s): the ring buffer was full", final.drops)
        self._bpf.cleanup()
        self._bpf = None

    def pause(self) -> None:
        """Detach the programs; maps, targets and "seen" state stay (resume continues)."""
        loader.detach(self._require())

    def resume(self) -> None:
        bpf = self._require()
        loader.attach(bpf)
        self._bump_generation(bpf)  # tasks may have changed namespaces meanwhile

    def __enter__(self) -> Tracer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._bpf is not None

    def _require(self) -> Any:
        if self._bpf is None:
            raise TracerError("the tracer is not started")
        return self._bpf

    # --- targets -------------------------------------------------------------------------

    def add_target(
        self, attribution: Attribution, *, mntns: int | None = None, pid: int | None = None
    ) -> int:
        """Capture the processes of mount namespace ``mntns`` and/or process ``pid`` (and its
        future children) for ``attribution``; returns the target id."""
        bpf = self._require()
        if mntns is None and pid is None:
            raise TracerError("a target needs a mount namespace inode or a pid")
        if not attribution.node:
            attribution = dataclasses.replace(attribution, node=self.node)
        target_id = self._next_id
        self._next_id += 1
        slot = target_id & (self.sizes.max_targets - 1)
        state = bpf[b"target_state"]
        state[ctypes.c_uint32(slot)] = state.Leaf()  # a fresh, all-zero bitmap
        self._targets[target_id] = attribution
        self._target_keys[target_id] = (mntns, pid)
        if mntns is not None:
            bpf[b"mntns_targets"][ctypes.c_uint32(mntns)] = ctypes.c_uint32(target_id)
        if pid is not None:
            bpf[b"pid_targets"][ctypes.c_uint32(pid)] = ctypes.c_uint32(target_id)
        self._bump_generation(bpf)
        log.info("target %d: %s mntns=%s pid=%s", target_id, attribution.profile, mntns, pid)
        return target_id

    def remove_target(self, target_id: int) -> None:
        bpf = self._require()
        attribution = self._targets.pop(target_id, None)
        if attribution is None:
            raise TracerError(f"no target {target_id}")
        mntns, _pid = self._target_keys.pop(target_id)
        if mntns is not None:
            bpf[b"mntns_targets"].pop(ctypes.c_uint32(mntns), None)
        pids = bpf[b"pid_targets"]
        for key, value in list(pids.items()):
            if value.value == target_id:
                pids.pop(key, None)
        self._bump_generation(bpf)
        self._retired[target_id] = attribution
        while len(self._retired) > _RETIRED_KEEP:
            self._retired.pop(next(iter(self._retired)))

    @staticmethod
    def _bump_generation(bpf: Any) -> None:
        """Invalidate the kernel's per-CPU memos of which target a task belongs to."""
        generation = bpf[b"generation"]
        key = ctypes.c_uint32(0)
        generation[key] = ctypes.c_uint64(generation[key].value + 1)

    def targets(self) -> dict[int, Attribution]:
        return dict(self._targets)

    def _lookup(self, target_id: int) -> Attribution | None:
        return self._targets.get(target_id) or self._retired.get(target_id)

    def _target_of_pid(self, pid: int) -> int:
        """The target a host pid belongs to (mount namespace first, then the pid map)."""
        try:
            mntns = mount_namespace_of(pid)
        except OSError:
            mntns = None
        for target_id, (ns, _pid) in self._target_keys.items():
            if mntns is not None and ns == mntns:
                return target_id
        value = self._require()[b"pid_targets"].get(ctypes.c_uint32(pid))
        return int(value.value) if value is not None else 0

    def _inspect(self, tgid: int, target_id: int, path: str) -> tuple[bool, int] | None:
        """(is a directory, owner uid) of ``path`` in the process's own root; through the
        target's registered pid when the process has exited already (a short-lived
        ``chmod`` is gone before its record is read)."""
        found = inspect_in_root(tgid, path)
        if found is None:
            _mntns, pid = self._target_keys.get(target_id, (None, None))
            if pid is not None and pid != tgid:
                found = inspect_in_root(pid, path)
        if found is None:
            found = self._names_seen.get((target_id, path))
        return found

    def _remember_names(self, record: Record, events: list[Event]) -> None:
        """Keep what the events of an operation on names said of each name."""
        fsuid = record.args[2] >> 32
        seen = self._names_seen
        for event in events:
            path = event["path"]
            key = (record.target, path.rstrip("/") or "/")
            seen[key] = (path.endswith("/"), fsuid if event.get("owner") else -1)
            seen.move_to_end(key)
        while len(seen) > NAMES_SEEN_LIMIT:
            seen.popitem(last=False)

    def _resolve_peer(self, caller_tgid: int, ns_pid: int) -> int:
        """Target of the process the caller named ``ns_pid`` in its own pid namespace."""
        host = host_pid(caller_tgid, ns_pid)
        return self._target_of_pid(host) if host else 0

    # --- records -------------------------------------------------------------------------

    def _on_record(self, _ctx: Any, data: Any, size: int) -> int:
        # Called by BCC from ring_buffer_poll; must never raise.
        self._stats.received += 1
        try:
            record = decode(ctypes.string_at(data, size))
            events = convert(
                record, record.ktime_ns + self._clock_offset, self._lookup, self._resolve_peer,
                self._inspect,
            )
        except SkipRecord as skip:
            self._stats.skipped[skip.reason] += 1
            log.debug("skipped record: %s", skip)
            return 0
        except (RecordError, EventError, UnicodeDecodeError) as exc:
            self._stats.skipped[type(exc).__name__] += 1
            log.warning("undecodable record skipped: %s", exc)
            return 0
        if record.kind == EV_FILE and record.flags & FLAG_NAMED:
            self._remember_names(record, events)
        for event in events:
            if event["kind"] == "file" and self._repeated_open(record.target, event):
                self._stats.skipped["repeated open"] += 1
                continue
            self._stats.published += 1
            if self._on_event is not None:
                self._on_event(event)
            self._batch.append(event)
        return 0

    def _repeated_open(self, target_id: int, event: Event) -> bool:
        """True when this target already reported this (path, perms, owner). The kernel
        recognises repeats of names up to 256 bytes; longer ones come on every open."""
        key = (target_id, event["path"], event["perms"], event.get("owner"), event.get("old_path"))
        seen = self._seen_opens
        if key in seen:
            seen.move_to_end(key)
            return True
        seen[key] = None
        if len(seen) > SEEN_OPENS_LIMIT:
            seen.popitem(last=False)
        return False

    def poll(self, timeout_ms: int = 100) -> list[Event]:
        """Wait up to ``timeout_ms`` for records; return the events they produced."""
        bpf = self._require()
        bpf.ring_buffer_poll(timeout_ms)
        out, self._batch = self._batch, []
        return out

    def drain(self) -> list[Event]:
        """Everything already in the ring buffer, without waiting."""
        bpf = self._require()
        bpf.ring_buffer_consume()
        out, self._batch = self._batch, []
        return out

    def iter_events(self, until: Callable[[], bool], timeout_ms: int = 100) -> Iterator[Event]:
        """Events until ``until()`` is true, then what is left in the ring buffer."""
        while not until():
            yield from self.poll(timeout_ms)
        yield from self.drain()

    def stats(self) -> TracerStats:
        """Kernel counters (summed over CPUs) and the user-space ones."""
        if self._bpf is not None:
            counters = self._bpf[b"counters"]

            def total(slot: int) -> int:
                return sum(int(v) for v in counters.getvalue(ctypes.c_uint32(slot)))

            self._stats.observed = total(CNT_OBSERVED)
            self._stats.emitted = total(CNT_EMITTED)
            self._stats.drops = total(CNT_DROPPED)
            self._stats.truncated_paths = total(CNT_TRUNCATED)
            self._stats.unmediated_capability_checks = total(CNT_UNMEDIATED)
        return TracerStats(
            observed=self._stats.observed,
            emitted=self._stats.emitted,
            drops=self._stats.drops,
            truncated_paths=self._stats.truncated_paths,
            unmediated_capability_checks=self._stats.unmediated_capability_checks,
            received=self._stats.received,
            published=self._stats.published,
            skipped=Counter(self._stats.skipped),
        )


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_LIBC = ctypes.CDLL(None, use_errno=True)
_SYS_OPENAT2 = 437  # x86_64, as every architecture since 5.6
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


def inspect_in_root(pid: int, path: str) -> tuple[bool, int] | None:
    """(is a directory, owner uid) of the absolute ``path`` as process ``pid`` sees it,
    its last component not followed (lstat), or None.

    The name comes from inside a container: it is resolved with openat2's
    RESOLVE_IN_ROOT against the process's root, so symlinks and ".." stay inside it and
    never reach the agent's own files.
    """
    try:
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        how = _OpenHow(os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0,
                       _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        name = os.fsencode(path.lstrip("/") or ".")
        fd = _LIBC.syscall(_SYS_OPENAT2, root, name, ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            return None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
    finally:
        os.close(root)
    return stat.S_ISDIR(st.st_mode), st.st_uid


def host_pid(caller_tgid: int, ns_pid: int) -> int | None:
    """The host pid of the process ``caller_tgid`` calls ``ns_pid`` in its pid namespace.

    NSpid in /proc/<pid>/status lists a process's pid in each pid namespace from the host
    down; the caller's namespace sits at the caller's depth. A process in the caller's
    own namespace is preferred over one in a deeper namespace (sibling namespaces at the
    same depth are told apart by their inode; deeper ones are not checked for ancestry).
    """
    depth = _pid_ns_depth(caller_tgid)
    if depth is None:
        return None
    if depth == 0:
        return ns_pid
    try:
        caller_ns = os.stat(f"/proc/{caller_tgid}/ns/pid").st_ino
    except OSError:
        return None
    deeper: int | None = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        chain = _nspid(entry / "status")
        if chain is None or len(chain) <= depth or chain[depth] != ns_pid:
            continue
        if len(chain) == depth + 1:
            try:
                if os.stat(entry / "ns" / "pid").st_ino == caller_ns:
                    return int(entry.name)
            except OSError:
                continue
        elif deeper is None:
            deeper = int(entry.name)
    return deeper


def _nspid(status: Path) -> list[int] | None:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(p) for p in line.split()[1:]]
    except (OSError, ValueError):
        return None
    return None


def _pid_ns_depth(pid: int) -> int | None:
    chain = _nspid(Path(f"/proc/{pid}/status"))
    return None if chain is None else len(chain) - 1
